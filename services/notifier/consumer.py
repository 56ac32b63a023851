"""The notifier's consumers (statements, redemptions), applying a whole poll batch in one transaction.

The per-message transaction of `EventConsumer` (about ten round trips and a commit per event)
capped the notifier at ~150 statements/s on the shared benchmark machine (bench/notifier.py),
which is what most of P4's latency was. A batch keeps the same guarantees: each event's
processed-event row is written in the transaction of its effect, and the offsets are committed
after the database commit. If anything in the batch fails (a poison message, a database
error), the batch rolls back as a whole and goes through the per-message path, which
dead-letters poison messages and retries the rest."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import Payload, parse_payload
from services.common import inbox, metrics
from services.common.dead_letters import PoisonMessage
from services.common.kafka import EventConsumer

log = structlog.get_logger()


class BatchedEventConsumer(EventConsumer):
    async def apply_polled(self, messages: list[object], stop: asyncio.Event) -> bool:
        """The poll in one transaction; if that fails, message by message (EventConsumer's way)."""
        return await self._apply_batch(messages) or await super().apply_polled(messages, stop)

    def _decode(self, messages: list[object]) -> list[tuple[Envelope, Payload]] | None:
        """None when one is unreadable: the per-message path dead-letters it."""
        try:
            decoded: list[tuple[Envelope, Payload]] = []
            for message in messages:
                envelope = Envelope.from_bytes(message.value)  # type: ignore[attr-defined]
                decoded.append((envelope, parse_payload(envelope)))
        except (ValidationError, ValueError):
            return None
        return decoded

    async def _apply_batch(self, messages: list[object]) -> bool:
        """True when every message of the batch was applied (or already had been). One insert
        records the batch's event ids as processed (only the new ones come back), then the new
        events are applied in log order, all in one transaction."""
        decoded = self._decode(messages)
        if decoded is None:
            return False
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                fresh = await inbox.first_times(conn, self.name, [e.event_id for e, _ in decoded])
                new: list[tuple[Envelope, Payload]] = []
                for envelope, payload in decoded:
                    if envelope.event_id in fresh:
                        fresh.discard(envelope.event_id)  # the same event twice in a batch: once
                        new.append((envelope, payload))
                await self._apply_new(conn, new)
        except PoisonMessage:
            return False  # rolled back; the per-message path dead-letters it, applies the rest
        except Exception:
            log.exception("batch failed; applying its messages one by one", consumer=self.name)
            return False
        metrics.EVENTS_IN.labels(self.name).inc(len(new))
        return True

    async def _apply_new(self, conn: asyncpg.Connection, new: list[tuple[Envelope, Payload]]) -> None:
        """The batch's events not applied before, in log order: the handler for each."""
        for envelope, payload in new:
            await self._handler(conn, envelope, payload)
