"""The aiokafka outbox relay: every row published once, per-key order kept, and the partition
kafka-python's default partitioner would have chosen (so switching relays moves no key)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from kafka.partitioner.default import murmur2

from schemas.envelope import Envelope
from schemas.topics import Topic, topic_name
from services.common.db import create_pool, migrate
from services.common.kafka import ensure_topics
from services.common.outbox import enqueue_many
from services.common.outbox_aiokafka import AioKafkaOutboxRelay
from tests.integration.helpers import eventually, read_topic

pytestmark = pytest.mark.integration


async def test_the_bulk_relay_publishes_in_outbox_order_per_key(
    bootstrap, database_url, topic_prefix, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(ensure_topics, bootstrap, topic_prefix)
    topic = topic_name(Topic.REDEMPTIONS, topic_prefix)  # four partitions
    pool = await create_pool(database_url, "relaytest")
    await migrate(pool, "relaytest", tmp_path)
    keys = [str(uuid.uuid4()) for _ in range(37)]
    sent: dict[str, list[int]] = defaultdict(list)
    envelopes = []
    for n in range(6000):
        key = keys[n % len(keys)]
        sent[key].append(n)
        envelopes.append(
            Envelope(
                event_id=uuid.uuid4(),
                type="Probe",
                schema_version=1,
                occurred_at="2026-11-24T00:00:00Z",  # type: ignore[arg-type]
                producer="test",
                key=key,
                payload={"n": n},
            )
        )
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, topic, envelopes[:3000])
    stop = asyncio.Event()
    relay = asyncio.create_task(
        AioKafkaOutboxRelay(pool, bootstrap, schema="relaytest", batch_size=1000).run(stop)
    )
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, topic, envelopes[3000:])

    async def drained() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0  # type: ignore[no-any-return]

    try:
        await eventually("the outbox to drain", drained)
    finally:
        stop.set()
        await relay
        await pool.close()
    records = await asyncio.to_thread(read_topic, bootstrap, topic)
    assert len(records) == 6000
    seen: dict[str, list[int]] = defaultdict(list)
    for partition, _, envelope in sorted(records, key=lambda r: (r[0], r[1])):
        assert isinstance(envelope, Envelope)
        assert partition == (murmur2(envelope.key.encode()) & 0x7FFFFFFF) % 4  # kafka-python's choice
        seen[envelope.key].append(envelope.payload["n"])
    assert seen == sent
