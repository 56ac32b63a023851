"""Dead letters: a message a consumer cannot apply goes, with its reason, to the dead-letter
topic through the consumer's own outbox, in the transaction that records it as handled."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from schemas.events import DeadLetterRecorded
from services.common import inbox, metrics
from services.common.events import EventFactory
from services.common.outbox import enqueue

log = structlog.get_logger()
DEAD_LETTER_NS = uuid.UUID("6f1d1c0e-3f5e-4c1e-9a43-5d0c1e2b7a10")


class PoisonMessage(Exception):
    """A message that can never be applied (it contradicts what the consumer knows).
    It goes to the dead-letter topic with this reason; the stream goes on."""


@dataclass(frozen=True)
class Incoming:
    """A message as read from Kafka, whatever the client library."""

    topic: str
    partition: int
    offset: int
    value: bytes


async def record_dead_letter(
    conn: asyncpg.Connection,
    events: EventFactory,
    *,
    consumer: str,
    dead_letter_topic: str,
    message: Incoming,
    reason: str,
) -> None:
    log.warning("dead letter", consumer=consumer, topic=message.topic, offset=message.offset, reason=reason)
    payload = DeadLetterRecorded(
        consumer=consumer,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        reason=reason,
        raw=message.value.decode("utf-8", errors="replace"),
    )
    # Keyed by the message's position, so a redelivered poison message is dead-lettered once.
    position = f"{consumer}:{message.topic}:{message.partition}:{message.offset}"
    envelope = events.envelope(payload, key=consumer).model_copy(
        update={"event_id": uuid.uuid5(DEAD_LETTER_NS, position)}
    )
    # Recorded as processed, so a redelivery is dead-lettered once even after the outbox pruned the
    # first one (the outbox's unique event id drops a repeat only while it holds the first).
    if not await inbox.first_time(conn, consumer, envelope.event_id):
        return
    await enqueue(conn, dead_letter_topic, envelope)
    metrics.DEAD_LETTERS.labels(consumer).inc()


def first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
