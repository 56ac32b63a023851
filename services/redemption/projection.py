"""The redemption service's projection of issuer events: one handler per event type."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg

from schemas.envelope import Envelope
from schemas.events import (
    BookletActivated,
    PassCancelled,
    PassExpired,
    Payload,
    ProgrammeRegistered,
    SiteQualificationGranted,
    SiteQualificationWithdrawn,
    SiteRegistered,
)


async def programme_registered(conn: asyncpg.Connection, e: ProgrammeRegistered) -> None:
    funders = json.dumps([f.model_dump(mode="json") for f in e.funders])
    await conn.execute(
        "INSERT INTO programmes (programme_id, face_value_cents, valid_from, valid_until, grace_days, "
        "learning_paths, funders) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (programme_id) DO NOTHING",
        e.programme_id,
        e.face_value_cents,
        e.valid_from,
        e.valid_until,
        e.grace_days,
        list(e.learning_paths),
        funders,
    )


async def site_registered(conn: asyncpg.Connection, e: SiteRegistered) -> None:
    await conn.execute(
        "INSERT INTO sites (site_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", e.site_id, e.name
    )


async def qualification_granted(conn: asyncpg.Connection, e: SiteQualificationGranted) -> None:
    await conn.execute(
        "INSERT INTO qualifications (site_id, programme_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        e.site_id,
        e.programme_id,
    )


async def qualification_withdrawn(conn: asyncpg.Connection, e: SiteQualificationWithdrawn) -> None:
    await conn.execute(
        "DELETE FROM qualifications WHERE site_id = $1 AND programme_id = $2", e.site_id, e.programme_id
    )


async def booklet_activated(conn: asyncpg.Connection, e: BookletActivated) -> None:
    await conn.executemany(
        "INSERT INTO passes (pass_id, code, programme_id, booklet_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING",
        [(p.pass_id, p.code, e.programme_id, e.booklet_id) for p in e.passes],
    )


async def pass_cancelled(conn: asyncpg.Connection, e: PassCancelled) -> None:
    await conn.execute("UPDATE passes SET status = 'cancelled' WHERE pass_id = $1", e.pass_id)


async def pass_expired(conn: asyncpg.Connection, e: PassExpired) -> None:
    # A cancellation stands: an expiry only applies to a pass still active.
    await conn.execute(
        "UPDATE passes SET status = 'expired' WHERE pass_id = $1 AND status = 'active'", e.pass_id
    )


HANDLERS: dict[type[Payload], Callable[[asyncpg.Connection, object], Awaitable[None]]] = {
    ProgrammeRegistered: programme_registered,  # type: ignore[dict-item]
    SiteRegistered: site_registered,  # type: ignore[dict-item]
    SiteQualificationGranted: qualification_granted,  # type: ignore[dict-item]
    SiteQualificationWithdrawn: qualification_withdrawn,  # type: ignore[dict-item]
    BookletActivated: booklet_activated,  # type: ignore[dict-item]
    PassCancelled: pass_cancelled,  # type: ignore[dict-item]
    PassExpired: pass_expired,  # type: ignore[dict-item]
}


async def apply(conn: asyncpg.Connection, _: Envelope, payload: Payload) -> None:
    handler = HANDLERS.get(type(payload))
    if handler is not None:  # events of no concern to redemption (orders, payments) are skipped
        await handler(conn, payload)
