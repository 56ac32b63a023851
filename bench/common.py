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


def infra() -> tuple[str, str]:
    # What the benchmark started (not a stack someone else runs) stops when it ends.
    atexit.register(stop_infra)
    started = ensure_infra()
    return started.bootstrap_servers, started.database_url


def fresh_database(base_url: str, stem: str) -> str:
    name = f"bench_{stem}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(base_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return base_url.rsplit("/", 1)[0] + "/" + name


def topic_prefix(stem: str) -> str:
    return f"bench-{stem}-{int(time.time())}."


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
