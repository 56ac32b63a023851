"""What follows an attempt, whatever the channel: the attempt row, then delivered, a retry at
the schedule's next step, or — the schedule spent — failed, with a dead-letter record, a
NotificationFailed event and, for a webhook endpoint that keeps failing, its disabling.

All of it in the caller's transaction, with the outbox row of the event: a crash before the
commit leaves the delivery pending, to be sent again with the same webhook-id."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from schemas.events import (
    FunderNotificationDelivered,
    FunderNotificationFailed,
    NotificationDelivered,
    NotificationFailed,
    Payload,
    ReversalNotificationDelivered,
    ReversalNotificationFailed,
)
from schemas.topics import Topic
from services.common.outbox import enqueue, enqueue_many
from services.common.runtime import Runtime
from services.notifier.domain.schedule import endpoint_disable_reason, next_attempt
from services.notifier.settings import NotifierSettings

# Columns of `deliveries` every sender selects (as d.*) so outcomes can be recorded.
DELIVERY_COLUMNS = (
    "d.notification_id, d.kind, d.statement_id, d.reversal_id, d.site_id, d.funder_id, d.window_id, d.channel, "
    "d.endpoint_id, d.email_channel_id, d.body, d.attempts"
)


async def record_outcome(
    conn: asyncpg.Connection,
    rt: Runtime,
    settings: NotifierSettings,
    row: asyncpg.Record,
    error: str | None,
    *,
    final: bool = False,
) -> None:
    """`error` None means delivered; `final` means no retry makes sense (e.g. endpoint disabled)."""
    attempt = row["attempts"] + 1
    now = rt.clock.now()
    await conn.execute(
        "INSERT INTO delivery_attempts (notification_id, attempt, at, outcome) VALUES ($1, $2, $3, $4)",
        row["notification_id"],
        attempt,
        now,
        error or "delivered",
    )
    if error is None:
        await _delivered(conn, rt, row, attempt, now)
        return
    retry_at = None if final else next_attempt(attempt, now, settings.retry_schedule)
    await conn.execute(
        "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = COALESCE($4, next_attempt_at), "
        "last_error = $5 WHERE notification_id = $1",
        row["notification_id"],
        "pending" if retry_at else "failed",
        attempt,
        retry_at,
        error,
    )
    if retry_at is None:
        await _failed(conn, rt, settings, row, attempt, now, error)


async def _delivered(
    conn: asyncpg.Connection, rt: Runtime, row: asyncpg.Record, attempt: int, now: datetime
) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'delivered', attempts = $2, delivered_at = $3, last_error = NULL "
        "WHERE notification_id = $1",
        row["notification_id"],
        attempt,
        now,
    )
    if row["endpoint_id"] is not None:
        await conn.execute(
            "UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE endpoint_id = $1", row["endpoint_id"]
        )
    await _emit(conn, rt, row, attempt, None)


async def _failed(
    conn: asyncpg.Connection,
    rt: Runtime,
    settings: NotifierSettings,
    row: asyncpg.Record,
    attempt: int,
    now: datetime,
    error: str,
) -> None:
    await conn.execute(
        "INSERT INTO notification_dead_letters (notification_id, channel, attempts, reason, recorded_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        row["notification_id"],
        row["channel"],
        attempt,
        error,
        now,
    )
    if row["endpoint_id"] is not None:
        failures = await conn.fetchval(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 "
            "WHERE endpoint_id = $1 RETURNING consecutive_failures",
            row["endpoint_id"],
        )
        reason = endpoint_disable_reason(failures, settings.disable_after_failures, error)
        if reason:
            await conn.execute(
                "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3 "
                "WHERE endpoint_id = $1 AND disabled_at IS NULL",
                row["endpoint_id"],
                now,
                reason,
            )
    await _emit(conn, rt, row, attempt, error)


async def _emit(
    conn: asyncpg.Connection, rt: Runtime, row: asyncpg.Record, attempt: int, error: str | None
) -> None:
    event = outcome_event(row, attempt, error)
    key = str(row["funder_id"] if row["kind"] == "funder_statement" else row["site_id"])
    await enqueue(conn, rt.topic(Topic.NOTIFICATIONS), rt.events.envelope(event, key=key))


def outcome_event(row: asyncpg.Record, attempt: int, error: str | None) -> Payload:
    """The NotificationDelivered/Failed of the delivery's kind (`error` None: delivered)."""
    common: dict[str, Any] = {
        "notification_id": row["notification_id"],
        "channel": row["channel"],
        "attempts": attempt,
    }
    failed: dict[str, Any] = {} if error is None else {"reason": error}
    if row["kind"] == "funder_statement":
        funder = {
            "funder_statement_id": row["statement_id"],
            "funder_id": row["funder_id"],
            "window_id": row["window_id"],
        }
        model: type[Payload] = FunderNotificationDelivered if error is None else FunderNotificationFailed
        return model(**common, **funder, **failed)
    if row["kind"] == "reversal":
        reversal = {
            "reversal_id": row["reversal_id"],
            "redemption_id": json.loads(row["body"])["data"]["redemption_id"],
            "site_id": row["site_id"],
            "window_id": row["window_id"],
        }
        model = ReversalNotificationDelivered if error is None else ReversalNotificationFailed
        return model(**common, **reversal, **failed)
    site = {"statement_id": row["statement_id"], "site_id": row["site_id"]}
    model = NotificationDelivered if error is None else NotificationFailed
    return model(**common, **site, **failed)


async def record_delivered(conn: asyncpg.Connection, rt: Runtime, rows: list[asyncpg.Record]) -> None:
    """`record_outcome` for a batch of deliveries that succeeded, in a handful of pipelined
    statements rather than four round trips each (the sender's hot path, see bench/notifier.py)."""
    if not rows:
        return
    now = rt.clock.now()
    await conn.executemany(
        "INSERT INTO delivery_attempts (notification_id, attempt, at, outcome) VALUES ($1, $2, $3, 'delivered')",
        [(r["notification_id"], r["attempts"] + 1, now) for r in rows],
    )
    await conn.execute(
        "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, last_error = NULL "
        "WHERE notification_id = ANY($1::text[])",
        [r["notification_id"] for r in rows],
        now,
    )
    endpoints = sorted({r["endpoint_id"] for r in rows if r["endpoint_id"] is not None})
    if endpoints:
        await conn.execute(
            "UPDATE webhook_endpoints SET consecutive_failures = 0 "
            "WHERE endpoint_id = ANY($1::uuid[]) AND consecutive_failures <> 0",
            endpoints,
        )
    envelopes = [
        rt.events.envelope(
            NotificationDelivered(
                notification_id=r["notification_id"],
                statement_id=r["statement_id"],
                site_id=r["site_id"],
                channel=r["channel"],
                attempts=r["attempts"] + 1,
            ),
            key=str(r["site_id"]),
        )
        for r in rows
        if r["kind"] == "statement"
    ]
    await enqueue_many(conn, rt.topic(Topic.NOTIFICATIONS), envelopes)
    for r in rows:
        if r["kind"] != "statement":  # reversals after close: rare; funders' e-mails: not sent here
            await _emit(conn, rt, r, r["attempts"] + 1, None)
