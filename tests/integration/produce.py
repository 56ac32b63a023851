"""Writing events to the topics directly, as the services that own them would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.envelope import Envelope
from schemas.events import Payload
from schemas.topics import Topic, topic_name
from services.common.kafka import make_producer


def send(
    bootstrap: str, prefix: str, topic: Topic, payload: Payload, key: str, partition: int | None = None
) -> None:
    envelope = Envelope(
        event_id=uuid.uuid4(),
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=datetime.now(UTC),
        producer="test",
        key=key,
        payload=payload.model_dump(mode="json"),
    )
    producer = make_producer(bootstrap)
    try:
        producer.send(topic_name(topic, prefix), envelope.to_bytes(), key=key.encode(), partition=partition)
        producer.flush(30)
    finally:
        producer.close()
