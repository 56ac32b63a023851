"""Connection pools and the migrations runner.

Each service owns one Postgres schema (invariant 7): its pool sets `search_path` to it, and its
migrations are numbered SQL files applied once, in order, each in its own transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import asyncpg

PLUMBING_SQL = Path(__file__).parent / "sql"


async def create_pool(url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    await ensure_schema(url, schema)
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"passclear-{schema}"},
    )
    assert pool is not None
    return pool


async def ensure_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.UniqueViolationError:
        pass  # two services starting at once raced on the catalog: the schema exists
    finally:
        await conn.close()


def migration_files(dirs: Sequence[Path]) -> list[Path]:
    files = [f for d in dirs for f in d.glob("*.sql")]
    names = [f.name for f in files]
    if len(names) != len(set(names)):
        raise ValueError(f"two migrations share a name in {dirs}")
    return sorted(files, key=lambda f: f.name)


async def migrate(pool: asyncpg.Pool, schema: str, migrations_dir: Path) -> list[str]:
    """Apply the plumbing and the service's migrations not yet applied; returns their names."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        # Several replicas may start together: one migrates, the others wait for it.
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_id(schema))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for path in migration_files([PLUMBING_SQL, migrations_dir]):
                if path.name not in done:
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
                    applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_id(schema))
    return applied


def _lock_id(schema: str) -> int:
    return zlib.crc32(f"migrate:{schema}".encode())
