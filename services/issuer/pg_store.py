"""The issuer's Postgres adapter: reads and writes of its own schema only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.issuer.domain.model import Due, Share


async def programme(conn: asyncpg.Connection, programme_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM programmes WHERE programme_id = $1", programme_id)


async def programme_shares(conn: asyncpg.Connection, programme_id: UUID) -> list[Share]:
    rows = await conn.fetch(
        "SELECT funder_id, share_bp FROM programme_funders WHERE programme_id = $1 ORDER BY position",
        programme_id,
    )
    return [Share(r["funder_id"], r["share_bp"]) for r in rows]


async def missing_funders(conn: asyncpg.Connection, funder_ids: list[UUID]) -> list[UUID]:
    found = await conn.fetch("SELECT funder_id FROM funders WHERE funder_id = ANY($1::uuid[])", funder_ids)
    known = {r["funder_id"] for r in found}
    return [f for f in funder_ids if f not in known]


async def order_for_update(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    # Locks the order: two funders paying at once cannot both see themselves as not-last.
    return await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1 FOR UPDATE", order_id)


async def dues(conn: asyncpg.Connection, order_id: UUID) -> list[Due]:
    rows = await conn.fetch(
        "SELECT d.funder_id, d.amount_cents, p.payment_id IS NOT NULL AS paid "
        "FROM order_dues d LEFT JOIN payments p USING (order_id, funder_id) "
        "WHERE d.order_id = $1 ORDER BY d.position",
        order_id,
    )
    return [Due(r["funder_id"], r["amount_cents"], r["paid"]) for r in rows]


async def insert_booklets(
    conn: asyncpg.Connection,
    order_id: UUID,
    programme_id: UUID,
    booklets: list[tuple[UUID, list[tuple[UUID, str]]]],
) -> None:
    await conn.copy_records_to_table(
        "booklets",
        records=[(b, order_id, programme_id, n) for n, (b, _) in enumerate(booklets, start=1)],
        columns=["booklet_id", "order_id", "programme_id", "number"],
    )
    await conn.copy_records_to_table(
        "passes",
        records=[(p, b, code) for b, passes in booklets for p, code in passes],
        columns=["pass_id", "booklet_id", "code"],
    )


async def allocate(
    conn: asyncpg.Connection, prescriber_id: UUID, programme_id: UUID, count: int
) -> list[UUID]:
    """Give `count` active, unallocated booklets of a programme to a prescriber (oldest first)."""
    rows = await conn.fetch(
        "UPDATE booklets SET prescriber_id = $1 WHERE booklet_id IN ("
        "  SELECT booklet_id FROM booklets WHERE programme_id = $2 AND status = 'active' "
        "  AND prescriber_id IS NULL ORDER BY order_id, number LIMIT $3 FOR UPDATE SKIP LOCKED"
        ") RETURNING booklet_id",
        prescriber_id,
        programme_id,
        count,
    )
    return [r["booklet_id"] for r in rows]


async def booklet(
    conn: asyncpg.Connection, booklet_id: UUID, prescriber_id: UUID | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM booklets WHERE booklet_id = $1 AND ($2::uuid IS NULL OR prescriber_id = $2)",
        booklet_id,
        prescriber_id,
    )


async def booklet_for_update(
    conn: asyncpg.Connection, booklet_id: UUID, prescriber_id: UUID | None
) -> asyncpg.Record | None:
    """The booklet with its programme's terms, locked (a booklet is distributed once)."""
    return await conn.fetchrow(
        "SELECT b.*, g.valid_until, g.grace_days, g.min_age, g.max_age FROM booklets b "
        "JOIN programmes g USING (programme_id) "
        "WHERE b.booklet_id = $1 AND ($2::uuid IS NULL OR b.prescriber_id = $2) FOR UPDATE OF b",
        booklet_id,
        prescriber_id,
    )


async def insert_beneficiary(
    conn: asyncpg.Connection, beneficiary_id: UUID, prescriber_id: UUID, alias: str, person: Any
) -> None:
    await conn.execute(
        "INSERT INTO beneficiaries (beneficiary_id, prescriber_id, pseudonym, given_name, family_name, "
        "birth_date, email) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        beneficiary_id,
        prescriber_id,
        alias,
        person.given_name,
        person.family_name,
        person.birth_date,
        person.email,
    )


async def beneficiary(
    conn: asyncpg.Connection | asyncpg.Pool, beneficiary_id: UUID, prescriber_id: UUID | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM beneficiaries WHERE beneficiary_id = $1 AND ($2::uuid IS NULL OR prescriber_id = $2)",
        beneficiary_id,
        prescriber_id,
    )
