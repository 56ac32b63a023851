"""Group commit with fake batch executors: who gets which answer, and what a failure costs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.redemption.group_commit import GroupCommit


class Bad(Exception):
    pass


class Store:
    """Runs a batch all-or-nothing, like one transaction: any bad item fails the whole batch."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.alone: list[int] = []
        self.committed: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._delay = delay

    async def run_batch(self, items: Sequence[int]) -> list[str]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self._delay)
            if any(i < 0 for i in items):
                raise Bad("a bad item")
            self.committed += items
            return [f"ok {i}" for i in items]
        finally:
            self.in_flight -= 1

    async def run_one(self, item: int) -> str:
        self.alone.append(item)
        if item < 0:
            raise Bad(f"bad {item}")
        self.committed.append(item)
        return f"ok {item}"


async def test_requests_arriving_together_share_one_batch_and_each_gets_its_own_answer() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one)
    answers = await asyncio.gather(*(group.submit(i) for i in range(10)))
    assert answers == [f"ok {i}" for i in range(10)]
    assert store.batches == [list(range(10))] and store.alone == []


async def test_a_failing_request_fails_alone_and_the_others_are_answered() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one)
    answers = await asyncio.gather(*(group.submit(i) for i in (1, 2, -3, 4)), return_exceptions=True)
    assert answers[:2] == ["ok 1", "ok 2"] and answers[3] == "ok 4"
    assert isinstance(answers[2], Bad) and str(answers[2]) == "bad -3"
    # The failed batch wrote nothing; its requests ran again alone, in order.
    assert store.alone == [1, 2, -3, 4] and store.committed == [1, 2, 4]


async def test_a_lone_request_that_fails_is_not_run_twice() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one)
    with pytest.raises(Bad):
        await group.submit(-1)
    assert store.batches == [[-1]] and store.alone == []


async def test_batches_are_bounded_and_at_most_max_in_flight_run_at_once() -> None:
    store = Store(delay=0.01)
    group = GroupCommit(store.run_batch, store.run_one, max_batch=4, max_in_flight=2)
    answers = await asyncio.gather(*(group.submit(i) for i in range(19)))
    assert answers == [f"ok {i}" for i in range(19)]
    assert all(len(b) <= 4 for b in store.batches) and sorted(i for b in store.batches for i in b) == list(
        range(19)
    )
    assert store.most_in_flight == 2


async def test_requests_arriving_while_a_batch_runs_go_in_the_next_one() -> None:
    store = Store(delay=0.02)
    group = GroupCommit(store.run_batch, store.run_one, max_in_flight=1)
    first = asyncio.ensure_future(group.submit(0))
    await asyncio.sleep(0.005)  # the first batch is in flight
    later = await asyncio.gather(*(group.submit(i) for i in range(1, 6)))
    assert await first == "ok 0" and later == [f"ok {i}" for i in range(1, 6)]
    assert store.batches == [[0], [1, 2, 3, 4, 5]]


async def test_with_a_linger_requests_arriving_apart_share_a_batch() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one, linger=0.2)

    async def later(i: int) -> str:
        await asyncio.sleep(0.05 * i)
        return await group.submit(i)

    started = asyncio.get_running_loop().time()
    answers = await asyncio.gather(*(later(i) for i in range(3)))
    assert answers == ["ok 0", "ok 1", "ok 2"]
    assert store.batches == [[0, 1, 2]]  # 0.1 s apart at most: inside the first one's linger
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_a_full_batch_does_not_wait_for_the_linger() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one, max_batch=4, linger=5.0)
    answers = await asyncio.wait_for(asyncio.gather(*(group.submit(i) for i in range(4))), timeout=1.0)
    assert answers == [f"ok {i}" for i in range(4)] and store.batches == [[0, 1, 2, 3]]


async def test_without_a_linger_a_lone_request_goes_at_once() -> None:
    store = Store()
    group = GroupCommit(store.run_batch, store.run_one)
    started = asyncio.get_running_loop().time()
    assert await group.submit(7) == "ok 7"
    assert asyncio.get_running_loop().time() - started < 0.05
