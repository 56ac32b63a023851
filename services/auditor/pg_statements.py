"""Reads the clearing database's issued statements, read-only, for the replay to compare.

The session is read-only (`default_transaction_read_only`): any write it attempted would fail."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from services.auditor.replay import DbStatements


def read_statements(database_url: str, schema: str = "clearing") -> DbStatements:
    return asyncio.run(_read(database_url, schema))


async def _read(database_url: str, schema: str) -> DbStatements:
    conn = await asyncpg.connect(
        database_url,
        server_settings={
            "default_transaction_read_only": "on",
            "search_path": schema,
            "application_name": "passclear-auditor",
        },
    )
    try:
        statements = await conn.fetch(
            "SELECT statement_id, window_id, site_id, total_cents, digest, body FROM statements"
        )
        funders = await conn.fetch(
            "SELECT funder_statement_id, window_id, funder_id, amount_cents, digest, body FROM funder_statements"
        )
    finally:
        await conn.close()
    return DbStatements(
        statements={
            str(r["statement_id"]): _as_found(r, "statement_id", "site_id", "total_cents") for r in statements
        },
        funder_statements={
            str(r["funder_statement_id"]): _as_found(r, "funder_statement_id", "funder_id", "amount_cents")
            for r in funders
        },
    )


def _as_found(row: asyncpg.Record, id_: str, subject: str, amount: str) -> dict[str, Any]:
    """The body as stored, with the row's own columns over it: an edit to either shows."""
    body = row["body"]
    found: dict[str, Any] = orjson.loads(body) if isinstance(body, str | bytes) else dict(body)
    found.update(
        {
            id_: str(row[id_]),
            "window_id": row["window_id"],
            subject: str(row[subject]),
            amount: row[amount],
            "digest": row["digest"],
        }
    )
    return found
