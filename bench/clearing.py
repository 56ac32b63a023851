"""P2: redemption events applied durably per second by one clearing worker (faust agent, batched
ledger writes, each line recording the event it applied, in the same transaction), and, in the same run, the raw
aiokafka consume rate of the same topic, for the ratio.

The topic is filled first (BENCH_EVENTS redemptions over BENCH_SITES sites, keyed by site as the
redemption service keys them); then aiokafka reads it end to end; then one worker applies it.
Both rates are measured from the first record received to the last one consumed / committed,
so neither counts group joins or start-up. `make bench-clearing`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import env_float, fresh_database, infra, result_line, topic_prefix
from schemas.envelope import Envelope
from schemas.events import FunderShare, PassRedeemed
from schemas.topics import Topic, topic_name
from services.common.kafka import COMPRESSION

TARGET = 20_000.0
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SHARES = tuple(FunderShare(funder_id=uuid.uuid4(), share_bp=bp) for bp in (5000, 3000, 2000))


def events(count: int, sites: int) -> list[tuple[bytes, bytes]]:
    programme = uuid.uuid4()
    site_ids = [uuid.uuid4() for _ in range(sites)]
    out = []
    for n in range(count):
        site = site_ids[n % sites]
        payload = PassRedeemed(
            redemption_id=uuid.uuid4(),
            pass_id=uuid.uuid4(),
            site_id=site,
            programme_id=programme,
            window_id=1,
            face_value_cents=1000,
            funders=SHARES,
            learning_path="basic-skills",
            workshop_date=date(2026, 11, 2),
            accepted_at=T0 + timedelta(milliseconds=n),
        )
        envelope = Envelope(
            event_id=uuid.uuid4(),
            type=payload.TYPE,
            schema_version=payload.VERSION,
            occurred_at=T0,
            producer="bench",
            key=str(site),
            payload=payload.model_dump(mode="json"),
        )
        out.append((str(site).encode(), envelope.to_bytes()))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=COMPRESSION,  # as the redemption relay writes the topic
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, first, first_batch = 0, 0.0, 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got = sum(len(records) for records in batch.values())
            if got and not first:
                # The clock starts when the first records arrive; they are not counted.
                first, first_batch = time.perf_counter(), got
            seen += got
        return (count - first_batch) / (time.perf_counter() - first)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + 30
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise SystemExit(f"no metadata for {topic}")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    return set(parts)


async def worker_rate(bootstrap: str, count: int) -> tuple[float, float]:
    """One clearing worker (the service's faust app and applier) until every event is committed.
    Returns (events/s from the first fetch reaching the agent to the last commit, wall seconds
    incl. start-up)."""
    from faust.contrib.asgi import faust_app_running

    from services.clearing.app import MIGRATIONS
    from services.clearing.faust_worker import build_app
    from services.clearing.ledger import Fetched, LedgerApplier, Prepared
    from services.common.runtime import Runtime

    class Timed(LedgerApplier):
        last = 0.0
        applied = 0
        batches = 0
        busy = 0.0

        last_cpu = 0.0

        async def apply(self, batch: Sequence[Fetched] | Prepared) -> None:
            began = time.perf_counter()
            await super().apply(batch)
            # Counted after the transaction committed: durable.
            self.applied += batch.size if isinstance(batch, Prepared) else len(batch)
            self.batches += 1
            self.last = time.perf_counter()
            self.last_cpu = time.process_time()
            self.busy += self.last - began

    started = time.perf_counter()
    rt = await Runtime.start("clearing", MIGRATIONS)
    applier = Timed(rt)
    worker = build_app(
        app_id=f"{rt.kafka.topic_prefix}clearing",
        bootstrap=bootstrap,
        redemptions_topic=rt.topic(Topic.REDEMPTIONS),
        applier=applier,
    )
    # The clock starts when the worker's first fetch reaches its agent (before any parsing).
    first_fetch: list[float] = []
    first_cpu: list[float] = []
    put = worker.batches.put

    async def timed_put(batch: Any) -> None:
        if not first_fetch:
            first_fetch.append(time.perf_counter())
            first_cpu.append(time.process_time())
        await put(batch)

    worker.batches.put = timed_put  # type: ignore[method-assign, assignment]  # timing the channel's put
    try:
        async with faust_app_running(worker, stop_timeout=15):
            deadline = time.monotonic() + 600
            while applier.applied < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"worker applied {applier.applied} of {count} in 600 s")
                await asyncio.sleep(0.05)
            # At-least-once: the offsets must follow the commits (they are not in the rate).
            acked = await _offsets_committed(bootstrap, worker.conf.id, rt.topic(Topic.REDEMPTIONS), count)
            print(
                f"worker: consumer group offsets reached the end {acked - applier.last:.2f} s after the last commit"
            )
        lines = await rt.pool.fetchval("SELECT count(*) FROM ledger_lines")
        # Each line records the event it applied (its processed-event record).
        processed = await rt.pool.fetchval("SELECT count(DISTINCT event_id) FROM ledger_lines")
        if lines != count or processed != count:
            raise SystemExit(f"expected {count} ledger lines and records, found {lines} and {processed}")
        print(
            f"worker: {applier.batches} batches (mean {count / applier.batches:.0f} events), "
            f"{applier.busy:.1f} s of {applier.last - first_fetch[0]:.1f} s inside the applier's transactions (Postgres)"
        )
        print(f"worker: {lines} ledger lines recording {processed} distinct event ids in Postgres")
        # The worker's own CPU (all its threads; not Postgres's or the broker's): what the machine's
        # load does not change much, unlike the rate.
        cpu = applier.last_cpu - first_cpu[0]
        print(f"worker: {cpu:.1f} s of CPU in the worker process ({cpu / count * 1e6:.1f} µs per event)")
    finally:
        await rt.close()
    return count / (applier.last - first_fetch[0]), time.perf_counter() - started


async def _offsets_committed(bootstrap: str, group: str, topic: str, count: int) -> float:
    """When the group's committed offsets on `topic` add up to `count` (its end), perf_counter.
    Reads them as the group's coordinator has them; subscribes to nothing, joins nothing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum([await consumer.committed(tp) or 0 for tp in partitions]) >= count:
                return time.perf_counter()
            await asyncio.sleep(0.05)
        raise SystemExit(f"the group's offsets did not reach the end of {topic} within 60 s")
    finally:
        await consumer.stop()


async def run(bootstrap: str) -> None:
    count = int(env_float("BENCH_EVENTS", 200_000))
    sites = int(env_float("BENCH_SITES", 1_000))
    from services.common.kafka import ensure_topics

    prefix = os.environ["KAFKA_TOPIC_PREFIX"]
    ensure_topics(bootstrap, prefix)
    topic = topic_name(Topic.REDEMPTIONS, prefix)
    t = time.perf_counter()
    records = events(count, sites)
    await produce(bootstrap, topic, records)
    print(
        f"produced {count} PassRedeemed events over {sites} sites to {topic} in {time.perf_counter() - t:.1f} s"
    )
    raw = await raw_consume_rate(bootstrap, topic, count)
    print(f"raw aiokafka consume (no processing): {raw:,.0f} events/s")
    rate, wall = await worker_rate(bootstrap, count)
    print(
        f"clearing worker, applied durably: {rate:,.0f} events/s (wall {wall:.1f} s incl. start-up and group join)"
    )
    print(
        f"ratio worker / raw consume: {rate / raw:.3f}; target ≥ {TARGET:,.0f}/s: {'met' if rate >= TARGET else 'NOT met'}"
    )
    result_line("clearing_events_applied_per_s", rate, "events/s", f">= {TARGET:.0f}", raw, rate / raw)


def main() -> None:
    bootstrap, base_url = infra()
    os.environ.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": fresh_database(base_url, "clearing"),
            "KAFKA_TOPIC_PREFIX": topic_prefix("clearing"),
            "PASSCLEAR_PROFILE": os.environ.get("PASSCLEAR_PROFILE", "dev"),
        }
    )
    asyncio.run(run(bootstrap))


if __name__ == "__main__":
    main()
