"""Kafka plumbing: the idempotent producer, topic creation, and the consumer loop.

The consumer loop applies each event in one Postgres transaction together with its
processed-event record, and commits the Kafka offset only after that transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import Payload, parse_payload
from schemas.topics import TOPICS, Topic, TopicSpec, topic_name
from services.common import inbox, metrics
from services.common.dead_letters import Incoming, PoisonMessage, first_line, record_dead_letter
from services.common.events import EventFactory

log = structlog.get_logger()
LAG_REPORT_SECONDS = 5.0

Handler = Callable[[asyncpg.Connection, Envelope, Payload], Awaitable[None]]


# Every producer of the system compresses its batches with lz4 (the relays', and the benchmarks'
# stand-ins for them). Events are JSON with repeated keys, a programme's funders and a site's ids:
# a batch of 50 PassRedeemed events (42.7 kB) takes 21 % of its size with lz4 (zstd 12 %, at more
# CPU). The broker keeps the batches as produced; every consumer here reads them (aiokafka and
# faust through cramjam, kafka-python through lz4, the auditor's librdkafka natively).
COMPRESSION = "lz4"


def make_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        compression_type=COMPRESSION,
        client_id="passclear-relay",
    )


def ensure_topics(bootstrap: str, prefix: str, *, timeout: float = 30.0) -> list[str]:
    """Create every topic of `schemas.topics` that does not exist yet, and wait until the broker's
    metadata shows them all; returns the created names.

    The wait matters: a consumer that joins its group before its topic is in the metadata gets
    no partitions and would only notice the topic at its next metadata refresh, minutes later."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="passclear-admin")
    try:
        wanted = {spec.name(prefix): spec for spec in TOPICS.values()}
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, spec.partitions, 1, topic_configs=spec.configs)
            for name, spec in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another service may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
        _await_metadata(bootstrap, wanted, timeout)
        return [t.name for t in missing]
    finally:
        admin.close()


def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a test module's or a benchmark's own
    topics, when it ends); returns their names. Left behind, they pile up on a developer's broker:
    4,780 partition directories were found on one after a few weeks of runs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="passclear-admin")
    try:
        mine = [topic for topic in admin.list_topics() if topic.startswith(prefix)]
        if mine:
            admin.delete_topics(mine, timeout_ms=30_000)
        return mine
    finally:
        admin.close()


def _await_metadata(bootstrap: str, wanted: dict[str, TopicSpec], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        while True:
            consumer.topics()  # refreshes the cluster metadata
            known = {name: consumer.partitions_for_topic(name) or set() for name in wanted}
            if all(len(known[name]) >= spec.partitions for name, spec in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics not visible in the broker's metadata after {timeout:.0f}s")
            time.sleep(0.1)
    finally:
        consumer.close()


def partition_count(bootstrap: str, name: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise RuntimeError(f"topic {name} does not exist")
        return len(partitions)
    finally:
        consumer.close()


class EventConsumer:
    """Consumes topics as a consumer group and applies each event exactly once to Postgres."""

    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        bootstrap: str,
        pool: asyncpg.Pool,
        handler: Handler,
        events: EventFactory,
        topic_prefix: str,
    ) -> None:
        self.name = name
        self._group = f"{topic_prefix}{name}"
        self._topics = topics
        self._bootstrap = bootstrap
        self._pool = pool
        self._handler = handler
        self._events = events
        self._dead_letter_topic = topic_name(Topic.DEAD_LETTERS, topic_prefix)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = await asyncio.to_thread(self._connect)
        last_lag_report = 0.0
        try:
            while not stop.is_set():
                batch = await asyncio.to_thread(consumer.poll, 200, 500)
                messages = [m for records in batch.values() for m in records]
                # Only a poll applied to its end is committed: a stop asked while an event is
                # retried leaves the offsets uncommitted, and the poll is redelivered at start.
                if messages and await self.apply_polled(messages, stop):
                    await asyncio.to_thread(consumer.commit)
                if time.monotonic() - last_lag_report > LAG_REPORT_SECONDS:
                    await asyncio.to_thread(self._report_lag, consumer)
                    last_lag_report = time.monotonic()
        finally:
            await asyncio.to_thread(consumer.close)

    def _connect(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=self.name,
            # Safety net: notice topics or partitions created after joining within seconds.
            metadata_max_age_ms=10_000,
        )
        # Load the topics' metadata before the first poll joins the group: a group leader that
        # assigns without it hands out no partitions ("No partition metadata") and the group can
        # sit idle until a later rebalance.
        deadline = time.monotonic() + 30
        while not all(consumer.partitions_for_topic(t) for t in self._topics):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no metadata for {self._topics}")
            time.sleep(0.1)
        return consumer

    async def apply_polled(self, messages: list[object], stop: asyncio.Event) -> bool:
        """Apply one poll's messages in log order, each in its own transaction; True when all
        were applied. A consumer that applies a poll's messages together overrides this."""
        for message in messages:
            if not await self._apply_with_retry(message, stop):
                return False
        return True

    async def _apply_with_retry(self, message: object, stop: asyncio.Event) -> bool:
        # A failure that is not the message's fault (database down) must not skip the message:
        # retry it until it is applied or we are asked to stop (False: its offset must not be
        # committed).
        delay = 0.5
        while not stop.is_set():
            try:
                await self.apply(message)
                return True
            except Exception:
                log.exception("consumer failed to apply an event; retrying", consumer=self.name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        return False

    async def apply(self, message: object) -> None:
        incoming = Incoming(
            message.topic,  # type: ignore[attr-defined]
            message.partition,  # type: ignore[attr-defined]
            message.offset,  # type: ignore[attr-defined]
            message.value,  # type: ignore[attr-defined]
        )
        try:
            envelope = Envelope.from_bytes(incoming.value)
            payload = parse_payload(envelope)
        except (ValidationError, ValueError) as exc:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._dead_letter(conn, incoming, f"unreadable event: {first_line(exc)}")
            return
        structlog.contextvars.bind_contextvars(event_id=str(envelope.event_id), event_type=envelope.type)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if not await inbox.first_time(conn, self.name, envelope.event_id):
                    return
                try:
                    async with conn.transaction():
                        await self._handler(conn, envelope, payload)
                except PoisonMessage as exc:
                    await self._dead_letter(conn, incoming, str(exc))
                    return
            metrics.EVENTS_IN.labels(self.name).inc()
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type")

    async def _dead_letter(self, conn: asyncpg.Connection, message: Incoming, reason: str) -> None:
        await record_dead_letter(
            conn,
            self._events,
            consumer=self.name,
            dead_letter_topic=self._dead_letter_topic,
            message=message,
            reason=reason,
        )

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        assigned: list[TopicPartition] = list(consumer.assignment())
        if assigned:
            ends = consumer.end_offsets(assigned)
            lag = sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned)
            metrics.CONSUMER_LAG.labels(self.name).set(lag)
