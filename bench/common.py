"""What every benchmark needs: the real infrastructure, a fresh database and topic prefix, and the
closing JSON line {"metric", "value", "unit", "target", "baseline", "ratio"}."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
import uuid

import asyncpg

from deploy.local.stack import ensure_infra, stop_infra
from services.common.kafka import delete_topics

_bootstrap_servers: str | None = None


def infra() -> tuple[str, str]:
    # What the benchmark started (not a stack someone else runs) stops when it ends; registered
    # first, it runs last, after the scratch database and topics below are gone.
    global _bootstrap_servers
    atexit.register(stop_infra)
    started = ensure_infra()
    _bootstrap_servers = started.bootstrap_servers
    return started.bootstrap_servers, started.database_url


def _keep() -> bool:
    """BENCH_KEEP=1 leaves a run's database and topics for inspection; by default a run removes
    them when it ends (one P1 run writes ~1 GB: kept runs filled the disk and stopped the broker)."""
    return os.environ.get("BENCH_KEEP", "") not in ("", "0")


def execute(url: str, *statements: str) -> None:
    """Run `statements` in order on one connection to `url`, each on its own (no transaction)."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def fresh_database(base_url: str, stem: str) -> str:
    name = f"bench_{stem}_{uuid.uuid4().hex[:8]}"
    execute(base_url, f'CREATE DATABASE "{name}"')
    if not _keep():
        atexit.register(execute, base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return base_url.rsplit("/", 1)[0] + "/" + name


def settle(database_url: str) -> float:
    """After a benchmark's set-up, before its measured phase: VACUUM ANALYZE the set-up's rows and
    CHECKPOINT, so the measurement pays neither for writing out what the set-up dirtied nor for an
    autovacuum of freshly loaded tables (in a real programme, passes are issued days before they
    are redeemed). Returns the seconds it took."""

    started = time.monotonic()
    execute(database_url, "VACUUM (ANALYZE)", "CHECKPOINT")
    return time.monotonic() - started


def topic_prefix(stem: str) -> str:
    prefix = f"bench-{stem}-{int(time.time())}."
    if not _keep():
        atexit.register(_delete_topics, prefix)
    return prefix


def _delete_topics(prefix: str) -> None:
    servers = _bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers is not None:
        delete_topics(servers, prefix)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def result_line(
    metric: str,
    value: float,
    unit: str,
    target: str,
    baseline: float | None = None,
    ratio: float | None = None,
) -> None:
    print(
        json.dumps(
            {
                "metric": metric,
                "value": round(value, 2),
                "unit": unit,
                "target": target,
                "baseline": None if baseline is None else round(baseline, 2),
                "ratio": None if ratio is None else round(ratio, 3),
            }
        )
    )
