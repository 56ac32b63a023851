"""The ledger applier on the real database: batches apply once, whatever is redelivered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from schemas.topics import Topic, topic_name
from services.clearing.app import MIGRATIONS
from services.clearing.ledger import LedgerApplier
from services.common.dead_letters import Incoming
from services.common.runtime import Runtime
from tests.unit.factories import closed, envelope, redeemed, reversed_

pytestmark = pytest.mark.integration
SITE = uuid.UUID(int=4242)


@pytest.fixture(scope="module")
async def runtime(service_env: dict[str, str]) -> AsyncIterator[Runtime]:
    rt = await Runtime.start("clearing", MIGRATIONS)
    yield rt
    await rt.close()


def incoming(rt: Runtime, payload, n: int, partition: int = 0) -> Incoming:  # type: ignore[no-untyped-def]
    return Incoming(rt.topic(Topic.REDEMPTIONS), partition, n, envelope(payload, n).to_bytes())


async def state(pg: asyncpg.Connection) -> tuple[object, ...]:
    return (
        await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines"),
        await pg.fetchval("SELECT coalesce(sum(amount_cents), 0) FROM clearing.ledger_lines"),
        await pg.fetchval("SELECT count(*) FROM clearing.statements"),
        await pg.fetchval("SELECT count(*) FROM clearing.outbox"),
    )


async def test_a_batch_redelivered_whole_or_in_part_changes_nothing(runtime: Runtime, pg) -> None:  # type: ignore[no-untyped-def]
    applier = LedgerApplier(runtime)
    events = [redeemed(i, SITE) for i in range(1, 201)]
    batch = [incoming(runtime, e, i) for i, e in enumerate(events, start=1)]
    batch.append(incoming(runtime, reversed_(events[0], 1, window=1), 1000))
    batch.append(batch[5])  # the same event twice in one batch
    batch.append(incoming(runtime, closed(1, 0, partitions=1), 1001))
    await applier.apply(batch)
    once = await state(pg)
    assert once[:3] == (201, 199 * 1000, 1)
    await applier.apply(batch)
    await applier.apply(batch[100:150])
    assert await state(pg) == once
    total = await pg.fetchval("SELECT total_cents FROM clearing.statements WHERE site_id = $1", SITE)
    assert total == 199 * 1000


async def test_a_marker_on_the_wrong_partition_is_dead_lettered_and_the_batch_goes_on(
    runtime: Runtime, pg
) -> None:  # type: ignore[no-untyped-def]
    applier = LedgerApplier(runtime)
    site = uuid.UUID(int=4343)
    good = incoming(runtime, redeemed(5000, site, window=2), 5000, partition=1)
    liar = incoming(runtime, closed(2, 3, partitions=4), 5001, partition=1)
    after = incoming(runtime, redeemed(5002, site, window=2), 5002, partition=1)
    await applier.apply([good, liar, after])
    assert await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE site_id = $1", site) == 2
    assert await pg.fetchval("SELECT count(*) FROM clearing.closed_partitions WHERE window_id = 2") == 0
    dead = await pg.fetch(
        "SELECT body FROM clearing.outbox WHERE topic = $1",
        topic_name(Topic.DEAD_LETTERS, runtime.kafka.topic_prefix),
    )
    assert [b"another partition" in r["body"] for r in dead] == [True]


async def test_a_poison_message_in_the_middle_of_a_batch_is_dead_lettered_once_and_the_rest_applied(
    runtime: Runtime, pg
) -> None:  # type: ignore[no-untyped-def]
    applier = LedgerApplier(runtime)
    site = uuid.UUID(int=4444)
    good = [incoming(runtime, redeemed(6000 + i, site, window=3), 6000 + i, partition=2) for i in range(40)]
    poison = Incoming(runtime.topic(Topic.REDEMPTIONS), 2, 6100, b'{"type": "PassRedeemed", "payload": {}}')
    batch = [*good[:20], poison, *good[20:]]
    await applier.apply(batch)
    await applier.apply(batch[10:])  # a partial redelivery from before the poison message
    await applier.apply(batch)
    assert await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE site_id = $1", site) == 40
    ids = [envelope(redeemed(6000 + i, site, window=3), 6000 + i).event_id for i in range(40)]
    recorded = await pg.fetchval(
        "SELECT count(DISTINCT event_id) FROM clearing.ledger_lines WHERE event_id = ANY($1::uuid[])", ids
    )
    assert recorded == 40
    dead = await pg.fetch(
        "SELECT body FROM clearing.outbox WHERE topic = $1 AND body LIKE '%6100%'",
        topic_name(Topic.DEAD_LETTERS, runtime.kafka.topic_prefix),
    )
    assert len(dead) == 1 and b"unreadable event" in dead[0]["body"]


async def test_the_same_event_read_by_either_path_counts_once(runtime: Runtime, pg) -> None:  # type: ignore[no-untyped-def]
    applier = LedgerApplier(runtime)
    site = uuid.UUID(int=4545)
    event = envelope(redeemed(7000, site, window=4), 7000)
    # Valid, but not as our producers spell it: read by the models, not the hot path.
    unusual = event.to_bytes().replace(str(site).encode(), str(site).upper().encode())
    hot = Incoming(runtime.topic(Topic.REDEMPTIONS), 3, 7000, event.to_bytes())
    slow = Incoming(runtime.topic(Topic.REDEMPTIONS), 3, 7001, unusual)
    await applier.apply([hot, slow])
    await applier.apply([slow])
    await applier.apply([hot])
    assert await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE site_id = $1", site) == 1
    assert (
        await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE event_id = $1", event.event_id)
        == 1
    )
