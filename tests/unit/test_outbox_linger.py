"""The outbox relay's pauses between batches: none while a backlog is read, the linger after a
batch that emptied the outbox, the idle poll after an empty read, longer after each further one
(no database: the loop alone)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.common import outbox
from services.common.outbox import OutboxRelay


class _LockConn:
    async def fetchval(self, *_: Any) -> bool:
        return True  # the relay's advisory lock, granted

    async def execute(self, *_: Any) -> None:
        return None

    def is_closed(self) -> bool:
        return False


class _Pool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_LockConn]:
        yield _LockConn()


async def _pauses(monkeypatch: pytest.MonkeyPatch, linger: float, reads: list[int]) -> list[float]:
    stop = asyncio.Event()
    pauses: list[float] = []
    script = iter(reads)

    async def publish_once(conn: Any = None) -> int:
        try:
            return next(script)
        except StopIteration:
            stop.set()
            return 0

    async def wait(stop_: asyncio.Event, seconds: float) -> bool:
        pauses.append(seconds)
        return stop_.is_set()

    monkeypatch.setattr(outbox, "_wait", wait)
    relay = OutboxRelay(
        _Pool(),  # type: ignore[arg-type]
        None,
        schema="s",
        batch_size=100,
        idle_seconds=0.02,
        idle_max_seconds=0.16,
        linger_seconds=linger,
    )
    monkeypatch.setattr(relay, "publish_once", publish_once)
    await relay.run(stop)
    return pauses


async def test_a_relay_lingers_after_a_batch_that_emptied_the_outbox_and_reads_a_backlog_without_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # full batch (backlog: no pause), partial batch (linger), empty read (idle), partial (linger)
    pauses = await _pauses(monkeypatch, 0.05, [100, 100, 7, 0, 3])
    assert pauses == [0.05, 0.02, 0.05, 0.02]


async def test_without_a_linger_a_relay_reads_again_at_once_after_a_partial_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses = await _pauses(monkeypatch, 0.0, [100, 7, 0, 3])
    assert pauses == [0.02, 0.02]


async def test_an_idle_relay_polls_less_and_less_often_and_at_once_again_after_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # five empty reads (backing off to the maximum), an event (linger), then empty reads again,
    # backing off from the start (the script's end is one more empty read)
    pauses = await _pauses(monkeypatch, 0.05, [0, 0, 0, 0, 0, 1, 0, 0])
    assert pauses == [0.02, 0.04, 0.08, 0.16, 0.16, 0.05, 0.02, 0.04, 0.08]
