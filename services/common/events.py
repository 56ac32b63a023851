"""Building envelopes and reading them back."""

from __future__ import annotations

from schemas.envelope import Envelope
from schemas.events import Payload
from services.common.ports import Clock, IdGenerator


class EventFactory:
    def __init__(self, producer: str, clock: Clock, ids: IdGenerator) -> None:
        self._producer = producer
        self._clock = clock
        self._ids = ids

    def envelope(self, payload: Payload, *, key: str) -> Envelope:
        return Envelope(
            event_id=self._ids.new(),
            type=payload.TYPE,
            schema_version=payload.VERSION,
            occurred_at=self._clock.now(),
            producer=self._producer,
            key=key,
            payload=payload.model_dump(mode="json"),
        )
