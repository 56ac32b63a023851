"""The redemption service's Postgres adapter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import asyncpg
import orjson

from schemas.events import FunderShare
from services.redemption.domain.rules import RedemptionView

# The clearing-window lock (invariant 5). Redemptions and reversals hold it shared until they
# commit; closing a window takes it exclusively, so the close waits for every redemption in flight
# and later ones wait for the close. An advisory lock rather than FOR SHARE on the window row:
# hundreds of concurrent share locks on one row turn into MultiXacts, which cost every redemption.
# The window is read by a statement after the one that took the lock, so its snapshot is taken
# once the lock is held and sees the window a close just opened.
WINDOW_LOCK = 0x7061_7373  # "pass"


@dataclass(frozen=True)
class Redeem:
    """One redemption request as `redeem_passes` takes it; ids come from the service's id port."""

    code: str
    site_id: UUID
    learning_path: str
    workshop_date: date
    duration_minutes: int
    redemption_id: UUID
    event_id: UUID


@dataclass(frozen=True)
class Outcome:
    """What `redeem_passes` decided: "accepted", or the slug of the refusal with the pass's terms."""

    outcome: str
    window_id: int | None
    face_value_cents: int | None
    valid_from: date | None
    valid_until: date | None
    learning_paths: tuple[str, ...]
    accepted_at: datetime
    redemption_id: UUID


@dataclass(frozen=True)
class Stamp:
    """The moment a redemption is accepted, the date the rules judge it by, and where its event goes."""

    at: datetime
    today: date
    topic: str
    producer: str


def _outcome(row: asyncpg.Record, at: datetime, redemption_id: UUID) -> Outcome:
    paths = row["learning_paths"]
    return Outcome(
        row["outcome"],
        row["window_id"],
        row["face_value_cents"],
        row["valid_from"],
        row["valid_until"],
        tuple(paths) if paths is not None else (),
        at,
        redemption_id,
    )


def envelope_time(at: datetime) -> str:
    """`at` as the envelope's JSON writes a UTC datetime (pydantic: ISO 8601 with Z)."""
    return orjson.dumps(at, option=orjson.OPT_UTC_Z)[1:-1].decode()


async def redeem(conn: asyncpg.Connection, r: Redeem, stamp: Stamp) -> Outcome:
    """One redemption: `redeem_many` of one (inside the caller's transaction, if any)."""
    (outcome,) = await redeem_many(conn, [r], stamp)
    return outcome


async def redeem_many(conn: asyncpg.Connection, batch: Sequence[Redeem], stamp: Stamp) -> list[Outcome]:
    """A batch of redemptions in one statement and one transaction: each gets its own outcome,
    exactly as one-by-one `redeem` calls in the same order would decide."""
    rows = await conn.fetch(
        "SELECT * FROM redeem_passes($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ORDER BY n",
        [r.code for r in batch],
        [r.site_id for r in batch],
        [r.learning_path for r in batch],
        [r.workshop_date for r in batch],
        [r.duration_minutes for r in batch],
        [r.redemption_id for r in batch],
        [r.event_id for r in batch],
        stamp.today,
        stamp.at,
        envelope_time(stamp.at),
        stamp.topic,
        stamp.producer,
        WINDOW_LOCK,
    )
    return [_outcome(row, stamp.at, r.redemption_id) for row, r in zip(rows, batch, strict=True)]


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
