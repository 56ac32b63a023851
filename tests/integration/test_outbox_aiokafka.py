"""The aiokafka outbox relay: every row published once, per-key order kept, and the partition
kafka-python's default partitioner would have chosen (so switching relays moves no key)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from functools import partial

import asyncpg
import pytest
from kafka import KafkaAdminClient
from kafka.partitioner.default import murmur2

from schemas.envelope import Envelope
from schemas.topics import Topic, topic_name
from services.common.db import create_pool, migrate
from services.common.kafka import ensure_topics, make_producer
from services.common.outbox import OutboxRelay, enqueue_many
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
        envelopes.append(_envelope("Probe", key, {"n": n}))
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, topic, envelopes[:3000])
    stop = asyncio.Event()
    relay = asyncio.create_task(
        AioKafkaOutboxRelay(pool, bootstrap, schema="relaytest", batch_size=1000).run(stop)
    )
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, topic, envelopes[3000:])

    try:
        await eventually("the outbox to drain", partial(_drained, pool))
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


async def _drained(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0  # type: ignore[no-any-return]


def _envelope(type_: str, key: str, payload: dict[str, object]) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        schema_version=1,
        occurred_at="2026-11-24T09:30:00.123456Z",  # type: ignore[arg-type]
        producer="test",
        key=key,
        payload=payload,
    )


def _redemption_like(n: int, site: str, funders: list[dict[str, object]]) -> Envelope:
    return _envelope(
        "PassRedeemed",
        site,
        {
            "redemption_id": str(uuid.uuid4()),
            "pass_id": str(uuid.uuid4()),
            "site_id": site,
            "window_id": 1,
            "face_value_cents": 1000,
            "funders": funders,
            "learning_path": "Premiers pas sur internet",
            "workshop_date": "2026-11-24",
            "n": n,
        },
    )


def _log_bytes(bootstrap: str, topic: str) -> int:
    """The topic's size on the broker (its partitions' log segments), from DescribeLogDirs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answers = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    return sum(
        p["partition_size"]
        for broker in answers
        for log_dir in broker["log_dirs"]
        for t in log_dir["topics"]
        if t["name"] == topic
        for p in t["partitions"]
    )


@pytest.mark.parametrize("relay_kind", ["aiokafka", "kafka-python"])
async def test_both_relays_write_compressed_batches(
    bootstrap, database_url, topic_prefix, tmp_path, relay_kind
) -> None:  # type: ignore[no-untyped-def]
    """What the broker stores (and writes to disk) for 2,000 redemption-like events is well under
    their JSON bytes: the relays' batches are lz4-compressed, and read back whole."""
    prefix = f"{topic_prefix}{relay_kind}."  # one topic per relay: the sizes are each relay's own
    await asyncio.to_thread(ensure_topics, bootstrap, prefix)
    topic = topic_name(Topic.REDEMPTIONS, prefix)
    schema = f"compress_{relay_kind.replace('-', '_')}"
    pool = await create_pool(database_url, schema)
    await migrate(pool, schema, tmp_path)
    sites = [str(uuid.uuid4()) for _ in range(20)]
    funders: list[dict[str, object]] = [
        {"funder_id": str(uuid.uuid4()), "share_bp": bp} for bp in (5000, 3000, 2000)
    ]
    envelopes = [_redemption_like(n, sites[n % len(sites)], funders) for n in range(2000)]
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, topic, envelopes)
    producer = None
    try:
        if relay_kind == "aiokafka":
            stop = asyncio.Event()
            task = asyncio.create_task(
                AioKafkaOutboxRelay(pool, bootstrap, schema=schema, batch_size=500).run(stop)
            )
            await eventually("the outbox to drain", partial(_drained, pool))
            stop.set()
            await task
        else:
            producer = await asyncio.to_thread(make_producer, bootstrap)
            relay = OutboxRelay(pool, producer, schema=schema, batch_size=500)
            while await relay.publish_once():
                pass
    finally:
        if producer is not None:
            producer.close()
        await pool.close()
    json_bytes = sum(len(e.to_bytes()) for e in envelopes)
    stored = await asyncio.to_thread(_log_bytes, bootstrap, topic)
    assert 0 < stored < json_bytes / 2, f"{stored} bytes on the broker for {json_bytes} bytes of events"
    records = await asyncio.to_thread(read_topic, bootstrap, topic)
    assert sorted(e.event_id for _, _, e in records) == sorted(e.event_id for e in envelopes)
