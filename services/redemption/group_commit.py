"""Group commit: concurrent requests of one process executed together, in one statement and one
transaction, each request getting its own answer.

A request waits at most for the batch in flight to finish (plus one turn of the event loop): at
low load a batch is one request; under load the requests that arrived meanwhile go together.
When a whole batch fails (an error, not a refusal: refusals are answers), its transaction wrote
nothing, and each of its requests is run again alone, in order, so one bad request fails only
itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

Item = TypeVar("Item")
Answer = TypeVar("Answer")
log = structlog.get_logger()


class GroupCommit(Generic[Item, Answer]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Answer]]],
        run_one: Callable[[Item], Awaitable[Answer]],
        *,
        max_batch: int = 64,
        max_in_flight: int = 2,
    ) -> None:
        self._run_batch = run_batch
        self._run_one = run_one
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._scheduled or not self._waiting or self._in_flight >= self._max_in_flight:
            return
        # One turn of the loop: the requests parsed in this turn join the batch.
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.create_task(self._execute(batch))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._schedule()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        self._schedule()

    async def _execute(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._run_batch([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(answers)} answers")
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("a batch failed; running its requests one by one", size=len(batch), error=repr(exc))
            for item, future in batch:  # in order, so the answers are those of one-by-one calls
                await self._alone(item, future)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def _alone(self, item: Item, future: asyncio.Future[Answer]) -> None:
        try:
            answer = await self._run_one(item)
        except Exception as exc:
            _fail(future, exc)
            return
        if not future.done():
            future.set_result(answer)


def _fail(future: asyncio.Future[Answer], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
