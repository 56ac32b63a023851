"""What the notifier does with clearing events: one pending delivery per site channel."""

from __future__ import annotations

import json

import asyncpg

from schemas.envelope import Envelope
from schemas.events import Payload, StatementIssued
from services.notifier.domain.schedule import notification_id


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


async def statement_issued(conn: asyncpg.Connection, st: StatementIssued) -> None:
    endpoints = await conn.fetch(
        "SELECT endpoint_id FROM webhook_endpoints WHERE site_id = $1 AND disabled_at IS NULL", st.site_id
    )
    for endpoint in endpoints:
        nid = notification_id(st.statement_id, endpoint["endpoint_id"])
        await conn.execute(
            "INSERT INTO deliveries (notification_id, statement_id, site_id, endpoint_id, body, next_attempt_at) "
            "VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING",
            nid,
            st.statement_id,
            st.site_id,
            endpoint["endpoint_id"],
            webhook_body(st, nid),
        )


async def apply(conn: asyncpg.Connection, _: Envelope, payload: Payload) -> None:
    if isinstance(payload, StatementIssued):
        await statement_issued(conn, payload)
