"""Clearing's migration 008 on a ledger that already holds lines: each line's funder shares move
to ledger_shares under the id the worker computes, and the window close reads them back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.clearing import pg_store
from services.clearing.app import MIGRATIONS
from services.common.db import create_pool, migrate
from tests.integration.helpers import migrate_before

pytestmark = pytest.mark.integration


async def test_008_moves_each_line_s_shares_to_one_row_per_share_list(
    database_url: str, tmp_path: Path
) -> None:
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    f1, f2, f3 = (str(uuid.UUID(int=n)) for n in (11, 22, 33))
    lists = [[(f1, 5000), (f2, 3000), (f3, 2000)], [(f2, 3000), (f1, 5000), (f3, 2000)], [(f3, 10_000)]]
    site = uuid.UUID(int=7)
    try:
        await migrate_before(pool, schema, MIGRATIONS, "008", tmp_path)
        lines = [
            (uuid.uuid4(), site, uuid.uuid4(), lists[n % 3], n % 2)
            for n in range(12)  # the same shares in another order are another list (ties go by order)
        ]
        await pool.executemany(
            "INSERT INTO ledger_lines (ref_id, kind, site_id, pass_id, programme_id, window_id, amount_cents, "
            "funders, at, partition, event_id) VALUES ($1, 'redemption', $2, $3, $3, 1, 1000, $4, $5, $6, $1)",
            [
                (
                    ref,
                    s,
                    p,
                    json.dumps([{"funder_id": f, "share_bp": bp} for f, bp in shares]),
                    datetime.now(UTC),
                    part,
                )
                for ref, s, p, shares, part in lines
            ],
        )

        assert await migrate(pool, schema, MIGRATIONS) == [
            "008_ledger_shares.sql",
            "009_sampled_statistics.sql",
        ]
        targets = await pool.fetch(
            "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = 'ledger_lines'::regclass "
            "AND attnum > 0 AND NOT attisdropped"
        )
        assert targets and {r["attstattarget"] for r in targets} == {10}  # analyzed on a small sample
        stored = {
            r["shares_id"]: json.loads(r["funders"]) for r in await pool.fetch("SELECT * FROM ledger_shares")
        }
        assert stored == {
            pg_store.shares_id(shares): [{"funder_id": f, "share_bp": bp} for f, bp in shares]
            for shares in lists
        }
        by_line = dict(await pool.fetch("SELECT ref_id, shares_id FROM ledger_lines"))
        assert by_line == {ref: pg_store.shares_id(shares) for ref, _, _, shares, _ in lines}
        async with pool.acquire() as conn, conn.transaction():
            read = [line for chunk in [c async for c in pg_store.window_lines(conn, 1, 0)] for line in chunk]
        assert sorted((line.ref_id, line.funders) for line in read) == sorted(
            (str(ref), tuple(shares)) for ref, _, _, shares, part in lines if part == 0
        )
    finally:
        await pool.close()
