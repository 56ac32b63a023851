"""The clearing service's Postgres adapter."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import date, datetime
from uuid import UUID

import asyncpg

from schemas.events import FunderAmount, FunderShare, FunderStatementIssued, StatementIssued, WindowClosed
from services.clearing.domain.coverage import Coverage, Key, StatementDue, assess
from services.clearing.domain.payouts import FunderLine, Names
from services.clearing.domain.statements import FunderPart, Issued, LedgerLine, Line


def shares_id(funders: Iterable[tuple[str, int]]) -> UUID:
    """The id a share list (funder id, basis points, in order) has in ledger_shares (migration 008)."""
    text = ",".join(f"{funder_id}:{share_bp}" for funder_id, share_bp in funders)
    return UUID(hashlib.sha256(text.encode()).hexdigest()[:32])


def shares_json(funders: tuple[FunderShare, ...]) -> str:
    return json.dumps([f.model_dump(mode="json") for f in funders])


async def add_shares(conn: asyncpg.Connection, shares: Mapping[UUID, str] | Mapping[str, str]) -> None:
    """The share lists of lines about to be written (one per programme in force, mostly)."""
    await conn.execute(
        "INSERT INTO ledger_shares (shares_id, funders) SELECT * FROM unnest($1::uuid[], $2::jsonb[]) "
        "ON CONFLICT (shares_id) DO NOTHING",
        list(shares),
        list(shares.values()),
    )


async def add_lines(conn: asyncpg.Connection, lines: list[tuple[LedgerLine, int]]) -> None:
    """The batch's lines in one statement (arrays unnested server-side), not one per line."""
    if not lines:
        return
    shares = {_shares_id(line.funders): shares_json(line.funders) for line, _ in lines}
    await add_shares(conn, shares)
    columns: list[list[object]] = [[] for _ in range(10)]
    for line, partition in lines:
        values = (
            line.ref_id,
            line.kind,
            line.site_id,
            line.pass_id,
            line.programme_id,
            line.window_id,
            line.amount_cents,
            _shares_id(line.funders),
            line.at,
            partition,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.execute(
        "INSERT INTO ledger_lines (ref_id, kind, site_id, pass_id, programme_id, window_id, amount_cents, "
        "shares_id, at, partition) SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], "
        "$5::uuid[], $6::int[], $7::bigint[], $8::uuid[], $9::timestamptz[], $10::int[]) "
        "ON CONFLICT (ref_id) DO NOTHING",
        *columns,
    )


@functools.lru_cache(maxsize=1024)
def _shares_id(funders: tuple[FunderShare, ...]) -> UUID:
    return shares_id((str(f.funder_id), f.share_bp) for f in funders)


def _shares(funders_json: str) -> tuple[FunderShare, ...]:
    return tuple(FunderShare.model_validate(f) for f in json.loads(funders_json))


# Ids as text (Postgres prints canonical uuids, as str(UUID) does) in site order: the close
# streams whole sites at a time instead of holding the window's lines (a million) at once.
_WINDOW_LINES = (
    "SELECT site_id::text, at, ref_id::text, kind, pass_id::text, programme_id::text, amount_cents, "
    "shares_id FROM ledger_lines WHERE window_id = $1 AND partition = $2 ORDER BY ledger_lines.site_id"
)


async def window_lines(
    conn: asyncpg.Connection, window_id: int, partition: int, *, rows: int = 20_000
) -> AsyncIterator[list[Line]]:
    """The window's lines on a partition, a few hundred whole sites at a time, in site id order
    (a server-side cursor: needs the caller's transaction)."""
    # Every share list the ledger knows: a few per programme, ever.
    shares = {
        r[0]: _pairs(r[1]) for r in await conn.fetch("SELECT shares_id, funders::text FROM ledger_shares")
    }
    cursor = await conn.cursor(_WINDOW_LINES, window_id, partition)
    held: list[Line] = []
    while batch := await cursor.fetch(rows):
        held.extend(
            Line(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                shares[r[7]],
            )
            for r in batch
        )
        cut = len(held)
        last_site = held[-1].site_id
        while cut and held[cut - 1].site_id == last_site:
            cut -= 1  # the last site may go on in the next batch
        if cut:
            yield held[:cut]
            held = held[cut:]
    if held:
        yield held


def _pairs(funders_json: str) -> tuple[tuple[str, int], ...]:
    return tuple((str(f.funder_id), f.share_bp) for f in _shares(funders_json))


async def copy_statements(conn: asyncpg.Connection, issued: list[Issued]) -> None:
    """Statements and their funder parts by COPY (10,000 sites may close at once)."""
    await conn.copy_records_to_table(
        "statements",
        columns=[
            "statement_id",
            "window_id",
            "site_id",
            "total_cents",
            "digest",
            "body",
            "expected_payout_date",
        ],
        records=[
            (i.statement_id, i.window_id, i.site_id, i.total_cents, i.digest, i.body.decode(), i.payout_date)
            for i in issued
        ],
    )
    await conn.copy_records_to_table(
        "statement_parts",
        columns=["statement_id", "window_id", "site_id", "programme_id", "funder_id", "amount_cents"],
        records=[
            (i.statement_id, i.window_id, i.site_id, p.programme_id, p.funder_id, p.amount_cents)
            for i in issued
            for p in i.parts
        ],
    )


async def record_closed_partition(conn: asyncpg.Connection, marker: WindowClosed) -> int:
    """Record the partition as closed; returns how many partitions of the window are closed."""
    await conn.execute(
        "INSERT INTO closed_partitions (window_id, partition, partition_count, opened_at, closed_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        marker.window_id,
        marker.partition,
        marker.partition_count,
        marker.opened_at,
        marker.closed_at,
    )
    closed: int = await conn.fetchval(
        "SELECT count(*) FROM closed_partitions WHERE window_id = $1", marker.window_id
    )
    return closed


async def save_funder_statement(conn: asyncpg.Connection, fs: FunderStatementIssued) -> None:
    await conn.execute(
        "INSERT INTO funder_statements (funder_statement_id, window_id, funder_id, amount_cents, digest, body) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        fs.funder_statement_id,
        fs.window_id,
        fs.funder_id,
        fs.amount_cents,
        fs.digest,
        fs.model_dump_json(),
    )


async def statement(conn: asyncpg.Connection | asyncpg.Pool, statement_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT site_id, body FROM statements WHERE statement_id = $1", statement_id)


async def window_cleared(conn: asyncpg.Connection | asyncpg.Pool, window_id: int) -> bool:
    """Every partition of the window has passed its WindowClosed marker."""
    row = await conn.fetchrow(
        "SELECT count(*) AS closed, max(partition_count) AS expected FROM closed_partitions "
        "WHERE window_id = $1",
        window_id,
    )
    return bool(row is not None and row["expected"] is not None and row["closed"] == row["expected"])


async def coverage(conn: asyncpg.Connection | asyncpg.Pool) -> Coverage:
    """Coverage over every cleared statement so far (earlier windows' payouts use funds first)."""
    rows = await conn.fetch(
        "SELECT s.statement_id, s.window_id, s.site_id, s.total_cents, p.programme_id, p.funder_id, "
        "p.amount_cents FROM statements s LEFT JOIN statement_parts p USING (statement_id)"
    )
    dues: dict[uuid.UUID, StatementDue] = {}
    for r in rows:
        due = dues.get(r["statement_id"]) or StatementDue(
            r["statement_id"], r["window_id"], r["site_id"], r["total_cents"], ()
        )
        if r["programme_id"] is not None:
            part = FunderPart(r["programme_id"], r["funder_id"], r["amount_cents"])
            due = dataclasses.replace(due, parts=(*due.parts, part))
        dues[r["statement_id"]] = due
    paid_in = await _sums(conn, "funder_payments")
    ordered = await _sums(conn, "funder_dues")
    return assess(dues.values(), paid_in=paid_in, ordered=ordered)


async def _sums(conn: asyncpg.Connection | asyncpg.Pool, table: str) -> dict[Key, int]:
    rows = await conn.fetch(
        f"SELECT programme_id, funder_id, sum(amount_cents)::bigint AS cents FROM {table} "
        "GROUP BY programme_id, funder_id"
    )
    return {(r["programme_id"], r["funder_id"]): r["cents"] for r in rows}


async def save_statements(
    conn: asyncpg.Connection, statements: list[StatementIssued], parts: dict[UUID, tuple[FunderPart, ...]]
) -> None:
    await conn.executemany(
        "INSERT INTO statements (statement_id, window_id, site_id, total_cents, digest, body, "
        "expected_payout_date) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (
                st.statement_id,
                st.window_id,
                st.site_id,
                st.total_cents,
                st.digest,
                st.model_dump_json(),
                st.expected_payout_date,
            )
            for st in statements
        ],
    )
    await conn.executemany(
        "INSERT INTO statement_parts (statement_id, window_id, site_id, programme_id, funder_id, amount_cents) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (st.statement_id, st.window_id, st.site_id, p.programme_id, p.funder_id, p.amount_cents)
            for st in statements
            for p in parts[st.site_id]
        ],
    )


@dataclasses.dataclass(frozen=True)
class StatementAmounts:
    statement_id: uuid.UUID
    funder_amounts: tuple[FunderAmount, ...]


async def statement_funder_amounts(conn: asyncpg.Connection, window_id: int) -> list[StatementAmounts]:
    """Each statement's amount per funder, from its stored parts: what the call for funds needs,
    without reading back every line of every statement."""
    rows = await conn.fetch(
        "SELECT statement_id, funder_id, sum(amount_cents)::bigint AS cents FROM statement_parts "
        "WHERE window_id = $1 GROUP BY statement_id, funder_id",
        window_id,
    )
    per_statement: dict[uuid.UUID, list[FunderAmount]] = {}
    for r in rows:
        amount = FunderAmount(funder_id=r["funder_id"], amount_cents=r["cents"])
        per_statement.setdefault(r["statement_id"], []).append(amount)
    return [StatementAmounts(s, tuple(a)) for s, a in per_statement.items()]


@dataclasses.dataclass(frozen=True)
class StatementRow:
    statement_id: uuid.UUID
    window_id: int
    site_id: uuid.UUID
    total_cents: int
    expected_payout_date: date


async def statement_totals(conn: asyncpg.Connection, window_id: int) -> list[StatementRow]:
    rows = await conn.fetch(
        "SELECT statement_id, window_id, site_id, total_cents, expected_payout_date FROM statements "
        "WHERE window_id = $1",
        window_id,
    )
    return [StatementRow(**dict(r)) for r in rows]


async def names(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    sites: Iterable[UUID] = (),
    funders: Iterable[UUID] = (),
    programmes: Iterable[UUID] = (),
) -> Names:
    """The names the issuer's events gave these organisations (unknown ids are left out)."""
    site_rows = await conn.fetch(
        "SELECT site_id, name, siret FROM sites WHERE site_id = ANY($1)", list(sites)
    )
    funder_rows = await conn.fetch(
        "SELECT funder_id, name FROM funders WHERE funder_id = ANY($1)", list(funders)
    )
    programme_rows = await conn.fetch(
        "SELECT programme_id, name FROM programmes WHERE programme_id = ANY($1) AND name IS NOT NULL",
        list(programmes),
    )
    return Names(
        sites={r["site_id"]: (r["name"], r["siret"]) for r in site_rows},
        funders={r["funder_id"]: r["name"] for r in funder_rows},
        programmes={r["programme_id"]: r["name"] for r in programme_rows},
    )


async def funder_statement(
    conn: asyncpg.Connection | asyncpg.Pool, funder_statement_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT funder_id, body FROM funder_statements WHERE funder_statement_id = $1", funder_statement_id
    )


async def funder_statement_lines(
    conn: asyncpg.Connection | asyncpg.Pool, window_id: int, funder_id: UUID
) -> list[FunderLine]:
    """The funder's share of each site statement of the window, from the statements' parts."""
    rows = await conn.fetch(
        "SELECT statement_id, site_id, sum(amount_cents)::bigint AS cents FROM statement_parts "
        "WHERE window_id = $1 AND funder_id = $2 GROUP BY statement_id, site_id",
        window_id,
        funder_id,
    )
    return [FunderLine(r["statement_id"], r["site_id"], r["cents"]) for r in rows]


async def funder_programme_totals(
    conn: asyncpg.Connection | asyncpg.Pool, window_id: int, funder_id: UUID
) -> list[tuple[UUID, int]]:
    rows = await conn.fetch(
        "SELECT programme_id, sum(amount_cents)::bigint AS cents FROM statement_parts "
        "WHERE window_id = $1 AND funder_id = $2 GROUP BY programme_id ORDER BY programme_id::text",
        window_id,
        funder_id,
    )
    return [(r["programme_id"], r["cents"]) for r in rows]


async def window_period(
    conn: asyncpg.Connection | asyncpg.Pool, window_id: int
) -> tuple[datetime, datetime] | None:
    """When the window opened and closed, as its WindowClosed markers say."""
    row = await conn.fetchrow(
        "SELECT min(opened_at) AS opened, max(closed_at) AS closed FROM closed_partitions WHERE window_id = $1",
        window_id,
    )
    return None if row is None or row["opened"] is None else (row["opened"], row["closed"])
