"""Postgres CPU of one group-commit batch (issue 4, P1): the backend's CPU time per call of the
service's batch statement (pg_store.redeem_many), by batch size, in a fresh database on one
connection, and the same calls rolled back instead of committed (what the commit, its WAL flush
included, costs). Not the P1 benchmark: a probe of the fixed cost per call that the group
commit's batch size divides. Needs Postgres on this machine (it reads the backend's
/proc/<pid>/stat). BENCH_CALLS (2000) calls of one request; fewer for bigger batches.

Measured with it (s11-p1b, load 0.65-3.07): 375-400 us a call of one, 38-47 us a redemption in
batches of 64, and rolled back about the same as committed (330-390 us a call of one). A perf
profile of the backend over batches of one: 59 % in Postgres itself, flat (catalog cache and
hash lookups, executor and expression setup of the statement's plan at each call, allocations;
no function above 3 %), 34 % in the kernel, of which fdatasync 20 %, the answer's send 7 %,
epoll 4 %, WAL pwrite 2 %. Running the statement without redeem_passes' PL/pgSQL wrapper (plain
SQL prepared by asyncpg, the lock and window read in a small VOLATILE function) measured the same
in an interleaved A/B (367-427 against 370-403 us a call of one), so it was not kept."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from bench.common import env_float, fresh_database, infra
from services.common.db import create_pool, migrate
from services.redemption import pg_store

MIGRATIONS = Path(__file__).parent.parent / "services" / "redemption" / "migrations"
FUNDERS = '[{"funder_id":"f1","share_bp":6000},{"funder_id":"f2","share_bp":4000}]'


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def probe(database_url: str, calls: int) -> None:
    pool = await create_pool(database_url, "redemption", max_size=2)
    await migrate(pool, "redemption", MIGRATIONS)
    programme, site = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO programmes (programme_id, face_value_cents, valid_from, valid_until, grace_days, "
        "learning_paths, funders) VALUES ($1, 5000, '2026-01-01', '2027-12-31', 30, '{basic-skills}', $2)",
        programme,
        FUNDERS,
    )
    await pool.execute("INSERT INTO sites VALUES ($1, 'probe')", site)
    await pool.execute("INSERT INTO qualifications VALUES ($1, $2)", site, programme)
    await pool.execute(
        "INSERT INTO passes (pass_id, code, programme_id, booklet_id) "
        "SELECT gen_random_uuid(), 'P' || g, $1, $1 FROM generate_series(1, 300000) g",
        programme,
    )
    await pool.execute("ANALYZE")
    now = datetime.now(UTC)
    stamp = pg_store.Stamp(now, now.date(), "probe", "probe")
    issued = 0

    def batch(n: int) -> list[pg_store.Redeem]:
        nonlocal issued
        issued += n
        return [
            pg_store.Redeem(f"P{k}", site, "basic-skills", date(2026, 11, 20), 60, uuid.uuid4(), uuid.uuid4())
            for k in range(issued - n + 1, issued + 1)
        ]

    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

        async def committed(n: int) -> None:
            outcomes = await pg_store.redeem_many(conn, batch(n), stamp)
            assert all(o.outcome == "accepted" for o in outcomes), outcomes

        async def rolled_back(n: int) -> None:
            tx = conn.transaction()
            await tx.start()
            try:
                outcomes = await pg_store.redeem_many(conn, batch(n), stamp)
                assert all(o.outcome == "accepted" for o in outcomes), outcomes
            finally:
                await tx.rollback()

        for rep in range(2):
            for name, run in (("committed", committed), ("rolled back", rolled_back)):
                for n in (1, 4, 16, 64):
                    count = max(calls // n, 50)
                    for _ in range(20):
                        await run(n)
                    before = _cpu_seconds(pid)
                    for _ in range(count):
                        await run(n)
                    used = (_cpu_seconds(pid) - before) / count * 1e6
                    print(
                        f"round {rep + 1}, {name}, batches of {n}: backend CPU {used:.0f} us a call, "
                        f"{used / n:.0f} us a redemption ({count} calls)"
                    )
    await pool.close()


def main() -> None:
    _, base_url = infra()
    database_url = fresh_database(base_url, "redeem_call")
    asyncio.run(probe(database_url, int(env_float("BENCH_CALLS", 2000))))


if __name__ == "__main__":
    main()
