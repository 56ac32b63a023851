"""Group commit: concurrent requests of one process executed together, in one statement and one
transaction, each request getting its own answer.

A request waits at most `linger` seconds from its batch's first request, or for the batch in
flight to finish, whichever is later (plus one turn of the event loop); a full batch goes at once.
Without a linger, at low load a batch is one request; under load the requests that arrived
meanwhile go together. Postgres pays a fixed cost per statement and commit that a batch shares
(bench/redeem_call.py), so a short linger buys CPU with latency.
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
        linger: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self._run_one = run_one
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._linger = linger
        self._first_at = 0.0  # when the oldest waiting request arrived (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        if self._linger and not self._waiting:
            self._first_at = loop.time()
        self._waiting.append((item, future))
        if self._timer is not None and len(self._waiting) >= self._max_batch:
            self._timer.cancel()  # a full batch does not linger
            self._timer = None
            self._scheduled = False
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._scheduled or not self._waiting or self._in_flight >= self._max_in_flight:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        due = self._first_at + self._linger
        if self._linger and len(self._waiting) < self._max_batch and due > loop.time():
            self._timer = loop.call_at(due, self._flush)
        else:
            # One turn of the loop: the requests parsed in this turn join the batch.
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._timer = None
        batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
        if not batch:
            return
        if self._linger:
            self._first_at = asyncio.get_running_loop().time()  # what a full batch left lingers from now
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
