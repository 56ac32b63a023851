"""Clearing's handler for the issuer topic: what funders owe and pay, for coverage.

Run by the common EventConsumer, which records the event id in the same transaction."""

from __future__ import annotations

import asyncpg

from schemas.envelope import Envelope
from schemas.events import FunderPaymentRecorded, OrderPlaced, Payload


async def apply(conn: asyncpg.Connection, _: Envelope, payload: Payload) -> None:
    if isinstance(payload, OrderPlaced):
        await conn.executemany(
            "INSERT INTO funder_dues (order_id, programme_id, funder_id, amount_cents) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [
                (payload.order_id, payload.programme_id, d.funder_id, d.amount_cents)
                for d in payload.funder_dues
            ],
        )
    elif isinstance(payload, FunderPaymentRecorded):
        await conn.execute(
            "INSERT INTO funder_payments (payment_id, order_id, programme_id, funder_id, amount_cents) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            payload.payment_id,
            payload.order_id,
            payload.programme_id,
            payload.funder_id,
            payload.amount_cents,
        )
