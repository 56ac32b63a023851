"""The processed-event record: which events a consumer already applied."""

from __future__ import annotations

from uuid import UUID

import asyncpg


async def first_time(conn: asyncpg.Connection, consumer: str, event_id: UUID) -> bool:
    """Record that `consumer` applies `event_id` now; False if it already had.
    Call inside the transaction that applies the event's effect."""
    inserted = await conn.fetchval(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    return bool(inserted)


async def first_times(conn: asyncpg.Connection, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """Of these events, those `consumer` had not applied: recorded as applied now, in one
    statement. Call inside the transaction that applies their effects."""
    if not event_ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[]) "
        "ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        event_ids,
    )
    return {r["event_id"] for r in rows}
