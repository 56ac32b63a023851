"""Applies redemption-topic events to the ledgers, a batch per transaction.

A batch's ledger lines, processed-event records, statements and outbox rows commit together;
faust acknowledges the batch's offsets only after that commit (at-least-once), and the
processed-event record turns a redelivery into a no-op (invariant 4).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import structlog
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import PassRedeemed, Payload, RedemptionReversed, WindowClosed, parse_payload
from schemas.topics import Topic
from services.clearing import pg_store
from services.clearing.domain import statements as core
from services.common import metrics
from services.common.dead_letters import Incoming, PoisonMessage, first_line, record_dead_letter
from services.common.outbox import enqueue, enqueue_many
from services.common.runtime import Runtime

log = structlog.get_logger()
CONSUMER = "clearing-ledger"
EVENT_NS = uuid.UUID("a3c1f1e4-55d7-4c8b-9d0e-8f1b2c3d4e5f")


class LedgerApplier:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def apply_with_retry(self, batch: Sequence[Incoming]) -> None:
        # The database being away is not the messages' fault: retry the batch, never skip it.
        delay = 0.5
        while True:
            try:
                await self.apply(batch)
                return
            except Exception:
                log.exception("clearing failed to apply a batch; retrying", size=len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def apply(self, batch: Sequence[Incoming]) -> None:
        async with self._rt.pool.acquire() as conn, conn.transaction():
            readable: list[tuple[Incoming, Envelope, Payload]] = []
            for message in batch:
                try:
                    envelope = Envelope.from_bytes(message.value)
                    readable.append((message, envelope, parse_payload(envelope)))
                except (ValidationError, ValueError) as exc:
                    await self._dead_letter(conn, message, f"unreadable event: {first_line(exc)}")
            # One statement records the whole batch as processed; only the ids it inserted are
            # new (a redelivery returns none of them), all in the transaction of their effect.
            fresh = await _first_time(conn, [envelope.event_id for _, envelope, _ in readable])
            pending: list[tuple[core.LedgerLine, int]] = []
            for message, envelope, payload in readable:
                if envelope.event_id not in fresh:
                    continue
                fresh.discard(envelope.event_id)  # the same event twice in one batch counts once
                if isinstance(payload, PassRedeemed | RedemptionReversed):
                    pending.append((core.ledger_line(payload), message.partition))
                elif isinstance(payload, WindowClosed):
                    # Lines before the marker belong to the statements it triggers.
                    await pg_store.add_lines(conn, pending)
                    pending.clear()
                    await self._close_or_dead_letter(conn, payload, message)
            await pg_store.add_lines(conn, pending)
            metrics.EVENTS_IN.labels(CONSUMER).inc(len(readable))

    async def _close_or_dead_letter(
        self, conn: asyncpg.Connection, marker: WindowClosed, message: Incoming
    ) -> None:
        try:
            async with conn.transaction():  # a savepoint: a poison marker leaves no half-close
                await self._close(conn, marker, message)
        except PoisonMessage as exc:
            await self._dead_letter(conn, message, str(exc))

    async def _close(self, conn: asyncpg.Connection, marker: WindowClosed, message: Incoming) -> None:
        if marker.partition != message.partition:
            raise PoisonMessage("WindowClosed marker on another partition than it names")
        closed = await pg_store.record_closed_partition(conn, marker)
        lines = await pg_store.lines_of(conn, marker.window_id, marker.partition)
        parts = core.parts_for_partition(marker, lines)
        statements = core.statements_for_partition(marker, lines)
        # In batches, not a round trip per statement: a window may close 10,000 sites at once.
        await pg_store.save_statements(conn, statements, parts)
        await enqueue_many(
            conn,
            self._rt.topic(Topic.CLEARING),
            [self._envelope(st, key=str(st.site_id), name=str(st.statement_id)) for st in statements],
        )
        if closed == marker.partition_count:
            all_statements = await pg_store.statement_funder_amounts(conn, marker.window_id)
            for fs in core.funder_statements(marker.window_id, all_statements):
                await pg_store.save_funder_statement(conn, fs)
                await self._emit(conn, fs, key=str(fs.funder_id), name=str(fs.funder_statement_id))
            log.info("window cleared", window_id=marker.window_id, statements=len(all_statements))

    async def _emit(self, conn: asyncpg.Connection, payload: Payload, *, key: str, name: str) -> None:
        await enqueue(conn, self._rt.topic(Topic.CLEARING), self._envelope(payload, key=key, name=name))

    def _envelope(self, payload: Payload, *, key: str, name: str) -> Envelope:
        # Deterministic event ids: the same statement is the same event, however often computed.
        return self._rt.events.envelope(payload, key=key).model_copy(
            update={"event_id": uuid.uuid5(EVENT_NS, f"{payload.TYPE}:{name}")}
        )

    async def _dead_letter(self, conn: asyncpg.Connection, message: Incoming, reason: str) -> None:
        await record_dead_letter(
            conn,
            self._rt.events,
            consumer=CONSUMER,
            dead_letter_topic=self._rt.topic(Topic.DEAD_LETTERS),
            message=message,
            reason=reason,
        )


async def _first_time(conn: asyncpg.Connection, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Of these events, those not applied before: recorded as applied now, in one statement."""
    if not event_ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[]) "
        "ON CONFLICT DO NOTHING RETURNING event_id",
        CONSUMER,
        event_ids,
    )
    return {r["event_id"] for r in rows}
