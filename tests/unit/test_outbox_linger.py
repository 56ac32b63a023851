"""The outbox relay's pauses between batches: none while a backlog is read, the linger after a
batch that emptied the outbox, the idle poll after an empty read (no database: the loop alone)."""

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
    relay = OutboxRelay(_Pool(), None, schema="s", batch_size=100, idle_seconds=0.02, linger_seconds=linger)  # type: ignore[arg-type]
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
