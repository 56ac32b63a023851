"""Clearing's handler for the issuer topic: what funders owe and pay (coverage), programmes'
terms, issued and cancelled passes (credit notes), and the names of sites, funders and
programmes for the documents (organisations, not people: no personal data).

Run by the common EventConsumer, which records the event id in the same transaction."""

from __future__ import annotations

import json

import asyncpg

from schemas.envelope import Envelope
from schemas.events import (
    BookletActivated,
    FunderPaymentRecorded,
    FunderRegistered,
    OrderPlaced,
    PassCancelled,
    Payload,
    ProgrammeRegistered,
    SiteRegistered,
)


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
    elif isinstance(payload, ProgrammeRegistered):
        await conn.execute(
            "INSERT INTO programmes (programme_id, face_value_cents, valid_until, grace_days, funders, name) "
            # A programme known from before its name was kept gets it on a replay of the topic.
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (programme_id) DO UPDATE SET name = EXCLUDED.name "
            "WHERE programmes.name IS NULL",
            payload.programme_id,
            payload.face_value_cents,
            payload.valid_until,
            payload.grace_days,
            json.dumps([f.model_dump(mode="json") for f in payload.funders]),
            payload.name,
        )
    elif isinstance(payload, BookletActivated):
        await conn.execute(
            "INSERT INTO issued_passes (pass_id, programme_id, booklet_id) "
            "SELECT unnest($1::uuid[]), $2, $3 ON CONFLICT DO NOTHING",
            [p.pass_id for p in payload.passes],
            payload.programme_id,
            payload.booklet_id,
        )
    elif isinstance(payload, PassCancelled):
        await conn.execute(
            "INSERT INTO cancelled_passes (pass_id, programme_id, reason) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            payload.pass_id,
            payload.programme_id,
            payload.reason,
        )
    elif isinstance(payload, SiteRegistered):
        await conn.execute(
            "INSERT INTO sites (site_id, name, siret) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            payload.site_id,
            payload.name,
            payload.siret,
        )
    elif isinstance(payload, FunderRegistered):
        await conn.execute(
            "INSERT INTO funders (funder_id, name, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            payload.funder_id,
            payload.name,
            payload.kind,
        )
