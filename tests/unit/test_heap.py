"""The collector settings a hot-path service process runs with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_the_startup_heap_is_frozen_and_young_collections_are_rare() -> None:
    gc.unfreeze()
    kept = [object() for _ in range(1000)]
    heap.freeze_startup_heap()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_collector")
def test_garbage_made_before_start_is_freed_not_frozen() -> None:
    gc.unfreeze()

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    for _ in range(500):
        Cycle()
    heap.freeze_startup_heap()
    gc.unfreeze()  # what was frozen would be seen again now
    assert not [o for o in gc.get_objects() if type(o) is Cycle]
