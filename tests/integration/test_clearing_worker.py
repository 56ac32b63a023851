"""The clearing worker itself (faust, the real broker and database): every event of the topic is
applied once, the poison one dead-lettered, and the group's offsets reach the end only with the
effects committed; a second group reading the same log from offset 0 changes nothing.

The worker's fetch and ack paths are its own (services/clearing/faust_batches.py): this is where
they meet faust's offset commits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.contrib.asgi import faust_app_running

from schemas.topics import Topic
from services.clearing.app import MIGRATIONS
from services.clearing.faust_worker import build_app
from services.clearing.ledger import LedgerApplier
from services.common.kafka import ensure_topics, make_producer
from services.common.runtime import Runtime
from tests.unit.factories import envelope, redeemed, reversed_

pytestmark = pytest.mark.integration
SITES = [uuid.UUID(int=7000 + i) for i in range(8)]
REDEMPTIONS = 400


@pytest.fixture(scope="module")
async def runtime(service_env: dict[str, str]) -> AsyncIterator[Runtime]:
    ensure_topics(service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"])
    rt = await Runtime.start("clearing", MIGRATIONS)
    yield rt
    await rt.close()


def produce(rt: Runtime) -> int:
    """Redemptions over a few sites (keyed by site: several partitions), a reversal of every tenth,
    one event twice and one message that is not an event; returns how many records."""
    topic = rt.topic(Topic.REDEMPTIONS)
    producer = make_producer(rt.kafka.bootstrap_servers)
    sent = 0
    try:
        for n in range(1, REDEMPTIONS + 1):
            site = SITES[n % len(SITES)]
            r = redeemed(n, site)
            records = [envelope(r, n).to_bytes()]
            if n % 10 == 0:
                records.append(envelope(reversed_(r, n, window=1), 10_000 + n).to_bytes())
            if n == 7:
                records.append(records[0])  # redelivered by its producer
            if n == 200:
                records.append(b'{"type": "PassRedeemed", "payload": "not an event"}')
            for value in records:
                producer.send(topic, value, key=str(site).encode())
                sent += 1
        producer.flush(30)
    finally:
        producer.close()
    return sent


async def committed_total(rt: Runtime, group: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=rt.kafka.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        topic = rt.topic(Topic.REDEMPTIONS)
        while not (parts := consumer.partitions_for_topic(topic)):
            await consumer._client.force_metadata_update()  # a fresh client has no metadata yet
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in parts])
    finally:
        await consumer.stop()


async def run_worker_until_committed(rt: Runtime, group: str, records: int) -> None:
    worker = build_app(
        app_id=group,
        bootstrap=rt.kafka.bootstrap_servers,
        redemptions_topic=rt.topic(Topic.REDEMPTIONS),
        applier=LedgerApplier(rt),
    )
    async with faust_app_running(worker, stop_timeout=15):
        deadline = time.monotonic() + 90
        while await committed_total(rt, group) < records:
            assert time.monotonic() < deadline, "the group's offsets did not reach the end of the topic"
            await asyncio.sleep(0.2)


async def ledger(pg: asyncpg.Connection) -> tuple[object, ...]:
    return (
        await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines"),
        await pg.fetchval("SELECT count(DISTINCT event_id) FROM clearing.ledger_lines"),
        await pg.fetchval("SELECT coalesce(sum(amount_cents), 0) FROM clearing.ledger_lines"),
        await pg.fetchval("SELECT count(DISTINCT partition) FROM clearing.ledger_lines"),
    )


async def dead_letters(pg: asyncpg.Connection) -> list[str]:
    rows = await pg.fetch("SELECT body FROM clearing.outbox WHERE topic LIKE '%dead%'")
    return [
        bytes(r["body"]).decode() if isinstance(r["body"], bytes | memoryview) else str(r["body"])
        for r in rows
    ]


async def test_the_worker_applies_every_event_once_and_commits_offsets_after(runtime: Runtime, pg) -> None:  # type: ignore[no-untyped-def]
    records = produce(runtime)
    group = f"{runtime.kafka.topic_prefix}clearing"
    await run_worker_until_committed(runtime, group, records)
    reversals = REDEMPTIONS // 10
    # Offsets at the end mean every effect committed first: each line is there, once.
    once = await ledger(pg)
    assert once == (REDEMPTIONS + reversals, REDEMPTIONS + reversals, (REDEMPTIONS - reversals) * 1000, 4)
    letters = await dead_letters(pg)
    assert len(letters) == 1 and "unreadable event" in letters[0]

    # Another group reads the whole log again into the same ledger: a redelivery of everything.
    await run_worker_until_committed(runtime, f"{group}-again", records)
    assert await ledger(pg) == once
    assert len(await dead_letters(pg)) == 1
