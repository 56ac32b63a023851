"""What the notifier does with clearing events: one pending delivery per recipient and channel.

Notification ids derive from the statement and the channel, so a redelivered event (or a
restart) never creates a second notification with a new webhook-id."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from schemas.envelope import Envelope
from schemas.events import FunderStatementIssued, Payload, StatementIssued
from services.notifier.domain.schedule import funder_contact_channel, notification_id, site_contact_channel

INSERT_DELIVERY = (
    "INSERT INTO deliveries (notification_id, kind, statement_id, reversal_id, site_id, endpoint_id, channel, "
    "email_channel_id, funder_id, window_id, body, next_attempt_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now()) ON CONFLICT DO NOTHING"
)


def webhook_body(st: StatementIssued, notification: str) -> str:
    return json.dumps(
        {
            "type": "statement.issued",
            "id": notification,
            "data": {
                "statement_id": str(st.statement_id),
                "site_id": str(st.site_id),
                "window_id": st.window_id,
                "period_start": st.period_start.isoformat(),
                "period_end": st.period_end.isoformat(),
                "amount_cents": st.total_cents,
                "passes": st.redemptions,
                "reversals": st.reversals,
                "expected_payout_date": st.expected_payout_date.isoformat(),
                "digest": st.digest,
            },
        },
        separators=(",", ":"),
    )


Row = tuple[object, ...]


async def site_channels(conn: asyncpg.Connection, site_id: UUID) -> list[tuple[str, UUID | None, UUID]]:
    """(channel, email channel id or None, the id the notification id derives from) for each
    channel a site hears on. Without any channel of its own, the site hears by e-mail at its
    registry contact address, which the sender reads from the issuer's API (addresses never
    travel on Kafka)."""
    channels = await conn.fetch(
        "SELECT 'webhook' AS channel, endpoint_id AS id FROM webhook_endpoints "
        "WHERE site_id = $1 AND disabled_at IS NULL "
        "UNION ALL SELECT 'email', channel_id FROM email_channels WHERE site_id = $1 AND disabled_at IS NULL",
        site_id,
    )
    webhooks = [c["id"] for c in channels if c["channel"] == "webhook"]
    emails = [c["id"] for c in channels if c["channel"] == "email"]
    found: list[tuple[str, UUID | None, UUID]] = [("webhook", None, w) for w in webhooks]
    found += [("email", e, e) for e in emails]
    if not webhooks and not emails:
        found.append(("email", None, site_contact_channel(site_id)))
    return found


async def site_deliveries(
    conn: asyncpg.Connection, site_id: UUID, about: UUID
) -> list[tuple[str, str, UUID | None, UUID | None]]:
    """(notification id, channel, endpoint id, e-mail channel id) of each notification telling
    the site about `about` (a statement, a reversal): one per channel it hears on."""
    return [
        (notification_id(about, subject), channel, subject if channel == "webhook" else None, email)
        for channel, email, subject in await site_channels(conn, site_id)
    ]


async def statement_issued(conn: asyncpg.Connection, st: StatementIssued) -> None:
    rows: list[Row] = [
        (nid, "statement", st.statement_id, None, st.site_id, endpoint, channel, email, None, st.window_id,
         webhook_body(st, nid))
        for nid, channel, endpoint, email in await site_deliveries(conn, st.site_id, st.statement_id)
    ]  # fmt: skip
    await conn.executemany(INSERT_DELIVERY, rows)


async def funder_statement_issued(conn: asyncpg.Connection, fs: FunderStatementIssued) -> None:
    """Once per window and funder: the id derives from the funder statement and the funder."""
    nid = notification_id(fs.funder_statement_id, funder_contact_channel(fs.funder_id))
    body = fs.model_dump_json()
    await conn.execute(
        INSERT_DELIVERY, nid, "funder_statement", fs.funder_statement_id, None, None, None, "email", None,
        fs.funder_id, fs.window_id, body,
    )  # fmt: skip


async def apply(conn: asyncpg.Connection, _: Envelope, payload: Payload) -> None:
    if isinstance(payload, StatementIssued):
        await statement_issued(conn, payload)
    elif isinstance(payload, FunderStatementIssued):
        await funder_statement_issued(conn, payload)
