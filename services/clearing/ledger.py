"""Applies redemption-topic events to the ledgers, a batch per transaction.

A batch's ledger lines, processed-event records, statements and outbox rows commit together;
faust acknowledges the batch's offsets only after that commit (at-least-once), and the
processed-event record turns a redelivery into a no-op (invariant 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import Iterator, Sequence

import asyncpg
import orjson
import structlog
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import (
    PassRedeemed,
    Payload,
    RedemptionReversed,
    StatementIssued,
    WindowClosed,
    parse_payload,
)
from schemas.topics import Topic
from services.clearing import pg_store
from services.clearing.domain import statements as core
from services.clearing.stages import Stopwatch
from services.common import metrics
from services.common.dead_letters import Incoming, PoisonMessage, first_line, record_dead_letter
from services.common.outbox import enqueue, enqueue_encoded
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
        with _cyclic_gc_paused():
            await self._issue(conn, marker)

    async def _issue(self, conn: asyncpg.Connection, marker: WindowClosed) -> None:
        watch = Stopwatch()
        closed = await pg_store.record_closed_partition(conn, marker)
        window = core.Window(marker)
        issued = 0
        watch.lap("record close")
        # A few hundred sites at a time, by COPY: a window may close 10,000 sites at once.
        async for lines in pg_store.window_lines(conn, marker.window_id, marker.partition):
            watch.lap("read lines")
            statements = core.issue_all(window, lines)
            watch.lap("build statements")
            await pg_store.copy_statements(conn, statements)
            watch.lap("write statements")
            await enqueue_encoded(
                conn, self._rt.topic(Topic.CLEARING), [self._issued(st) for st in statements]
            )
            watch.lap("outbox")
            issued += len(statements)
        if closed == marker.partition_count:
            all_statements = await pg_store.statement_funder_amounts(conn, marker.window_id)
            for fs in core.funder_statements(marker.window_id, all_statements):
                await pg_store.save_funder_statement(conn, fs)
                await self._emit(conn, fs, key=str(fs.funder_id), name=str(fs.funder_statement_id))
            watch.lap("funder statements")
            log.info("window cleared", window_id=marker.window_id, statements=len(all_statements))
        log.info(
            "partition closed",
            window_id=marker.window_id,
            partition=marker.partition,
            statements=issued,
            seconds=watch.record(),
        )

    def _issued(self, st: core.Issued) -> tuple[uuid.UUID, str, bytes]:
        """A statement's outbox row: the envelope `_envelope` would give, encoded without a model."""
        head = Envelope(
            event_id=_event_id(StatementIssued.TYPE, str(st.statement_id)),
            type=StatementIssued.TYPE,
            schema_version=StatementIssued.VERSION,
            occurred_at=self._rt.clock.now(),
            producer=self._rt.name,
            key=str(st.site_id),
            payload={},
        )
        return head.event_id, head.key, encode_envelope(head, st.payload)

    async def _emit(self, conn: asyncpg.Connection, payload: Payload, *, key: str, name: str) -> None:
        await enqueue(conn, self._rt.topic(Topic.CLEARING), self._envelope(payload, key=key, name=name))

    def _envelope(self, payload: Payload, *, key: str, name: str) -> Envelope:
        return self._rt.events.envelope(payload, key=key).model_copy(
            update={"event_id": _event_id(payload.TYPE, name)}
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


def encode_envelope(head: Envelope, payload: dict[str, object]) -> bytes:
    """`head` with `payload`, as `to_bytes()` would write it: pydantic formats the envelope's own
    fields (its timestamps), orjson the payload, which the core built as JSON already (~5 times
    faster than pydantic inferring the types of a 20 kB dict; tests compare the bytes)."""
    fields = head.model_dump(mode="json")
    fields["payload"] = payload
    return orjson.dumps(fields)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A close allocates millions of short-lived tuples, strings and dicts, none in a cycle: the
    cyclic collector's passes over them (and over everything else the process holds) took about a
    quarter of the close and freed nothing. Reference counting still frees them as they go."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _event_id(event_type: str, name: str) -> uuid.UUID:
    # Deterministic event ids: the same statement is the same event, however often computed.
    return uuid.uuid5(EVENT_NS, f"{event_type}:{name}")


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
