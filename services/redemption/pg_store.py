"""The redemption service's Postgres adapter."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from schemas.events import FunderShare
from services.redemption.domain.rules import PassView, RedemptionView


async def pass_for_site(
    conn: asyncpg.Connection, code: str, site_id: UUID
) -> tuple[PassView, tuple[FunderShare, ...], int, bool] | None:
    """The pass with its programme's terms, and whether the site is qualified for it: one round
    trip on the hot path."""
    row = await conn.fetchrow(
        "SELECT p.pass_id, p.programme_id, p.status, g.valid_from, g.valid_until, g.grace_days, "
        "g.learning_paths, g.funders, g.face_value_cents, "
        "EXISTS (SELECT 1 FROM qualifications q WHERE q.site_id = $2 AND q.programme_id = p.programme_id) "
        "AS qualified FROM passes p JOIN programmes g USING (programme_id) "
        "CROSS JOIN (SELECT pg_advisory_xact_lock_shared($3)) AS window_lock WHERE p.code = $1",
        code,
        site_id,
        WINDOW_LOCK,
    )
    if row is None:
        return None
    view = PassView(
        row["pass_id"],
        row["programme_id"],
        row["status"],
        row["valid_from"],
        row["valid_until"],
        row["grace_days"],
        tuple(row["learning_paths"]),
    )
    funders = tuple(FunderShare.model_validate(f) for f in json.loads(row["funders"]))
    return view, funders, row["face_value_cents"], row["qualified"]


# The clearing-window lock (invariant 5). Redemptions and reversals hold it shared until they
# commit; closing a window takes it exclusively, so the close waits for every redemption in flight
# and later ones wait for the close. An advisory lock rather than FOR SHARE on the window row:
# hundreds of concurrent share locks on one row turn into MultiXacts, which cost every redemption.
# The window is read by a statement after the one that took the lock, so its snapshot is taken
# once the lock is held and sees the window a close just opened.
WINDOW_LOCK = 0x7061_7373  # "pass"


async def lock_window_shared(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", WINDOW_LOCK)


async def lock_window_exclusive(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", WINDOW_LOCK)


async def open_window(conn: asyncpg.Connection) -> int:
    """The open window: call with the window lock held (shared or exclusive)."""
    window_id: int = await conn.fetchval("SELECT window_id FROM current_window")
    return window_id


async def redemption_for_update(conn: asyncpg.Connection, redemption_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM redemptions WHERE redemption_id = $1 FOR UPDATE", redemption_id)


def redemption_view(row: asyncpg.Record | None) -> RedemptionView | None:
    if row is None:
        return None
    return RedemptionView(row["redemption_id"], row["site_id"], row["accepted_at"], row["reversed"])


async def programme_funders(conn: asyncpg.Connection, programme_id: UUID) -> tuple[FunderShare, ...]:
    raw = await conn.fetchval("SELECT funders FROM programmes WHERE programme_id = $1", programme_id)
    return tuple(FunderShare.model_validate(f) for f in json.loads(raw))
