"""P1: sustained accepted redemptions per second, with p50/p99 latency, against the real broker and
Postgres with the outbox relay and the clearing service running; and, in the same run, a trivial
endpoint of the same stack (/health) under the same load, for the ratio.

Load comes from wrk (C, one thread per core is enough), so the load generator does not eat the
Python services' CPU. `make bench-redemption`; BENCH_SECONDS (60), BENCH_PASSES (300000: enough
distinct passes for 5,000/s, so that no request reuses a code), BENCH_CONNECTIONS (64),
REDEMPTION_WORKERS (2) tune it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.common import env_float, fresh_database, infra, result_line, topic_prefix
from services.cli import scenario
from services.cli.client import Api, wait_for
from services.cli.processes import ServiceProcesses
from services.common.auth import Role, issue_token
from services.common.settings import DEV_SECRET

HERE = Path(__file__).parent
SITES = 50
BOOKLET = 100


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("bench-redemption needs wrk: apt-get install -y wrk")
    seconds = env_float("BENCH_SECONDS", 60)
    passes = int(env_float("BENCH_PASSES", 300_000))
    connections = int(env_float("BENCH_CONNECTIONS", 64))
    bootstrap, base_url = infra()
    database_url = fresh_database(base_url, "redemption")
    work = Path(tempfile.mkdtemp(prefix="bench-redemption-"))
    procs = ServiceProcesses(
        work,
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "KAFKA_TOPIC_PREFIX": topic_prefix("redemption"),
            "REDEMPTION_WINDOW_PERIOD": "manual",
            "DB_POOL_MAX": "20",
        },
        ports={"issuer": 18201, "redemption": 18202, "clearing": 18203},
        workers={"redemption": int(env_float("REDEMPTION_WORKERS", 2))},
    )
    try:
        procs.start_all()
        procs.wait_all_ready()
        print(
            f"stack up: issuer, redemption ({procs.workers['redemption']} workers), clearing; Kafka {bootstrap}"
        )
        codes, tokens = prepare(procs, passes)
        wait_projection(database_url, passes)
        (work / "codes.txt").write_text("\n".join(codes) + "\n")
        (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
        env = {
            **os.environ,
            "BENCH_CODES": str(work / "codes.txt"),
            "BENCH_TOKENS": str(work / "tokens.txt"),
            "BENCH_THREADS": "1",
        }
        base = procs.url("redemption")
        health = wrk([f"{base}/health"], seconds=min(seconds, 15), connections=connections, env=env)
        print(
            f"baseline GET /health: {health['rps']:.0f} req/s, p50 {health['p50']:.1f} ms, p99 {health['p99']:.1f} ms"
        )
        before = accepted_count(database_url)
        started = time.monotonic()
        run = wrk(
            ["-s", str(HERE / "redemption_wrk.lua"), base], seconds=seconds, connections=connections, env=env
        )
        elapsed = time.monotonic() - started
        accepted = accepted_count(database_url) - before
        rate = accepted / elapsed
        print(
            f"POST /redemptions for {elapsed:.0f} s: {accepted} accepted ({rate:.0f}/s), "
            f"{run['non2xx']} refused, p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms "
            f"(targets: ≥ 3000/s, p99 ≤ 50 ms)"
        )
        lag = outbox_lag(database_url)
        print(f"outbox rows not yet published at the end: {lag}")
        result_line(
            "redemptions_accepted_per_second",
            rate,
            "1/s",
            ">= 3000 with p99 <= 50 ms",
            baseline=health["rps"],
            ratio=rate / health["rps"] if health["rps"] else None,
        )
    finally:
        procs.stop_all()


def prepare(procs: ServiceProcesses, passes: int) -> tuple[list[str], list[str]]:
    finance = Api(procs.url("issuer"), DEV_SECRET, Role.FINANCE, "bench")
    funders = [
        finance.post("/funders", {"name": n, "kind": k})["funder_id"]
        for n, k in (("Région", "region"), ("ANCT", "state"), ("Enedis", "enedis"))
    ]
    programme = finance.post(
        "/programmes",
        {
            "name": "Bench",
            "territory": "Bench",
            "face_value_cents": 1000,
            "passes_per_booklet": BOOKLET,
            "valid_from": "2026-01-01",
            "valid_until": "2027-12-31",
            "grace_days": 31,
            "learning_paths": ["basic-skills"],
            "funders": [
                {"funder_id": f, "share_bp": bp} for f, bp in zip(funders, (5000, 3000, 2000), strict=True)
            ],
        },
    )["programme_id"]
    import random

    rng = random.Random(1)
    tokens = []
    for n in range(SITES):
        site = finance.post(
            "/sites",
            {
                "name": f"Site {n}",
                "siret": scenario.siret(rng),
                "iban": scenario.iban(rng),
                "bic": "BNPAFRPP",
                "contact_email": "s@example.org",
            },
        )["site_id"]
        finance.post(f"/sites/{site}/qualifications", {"programme_id": programme})
        tokens.append(issue_token(DEV_SECRET, Role.SITE, site))
    codes: list[str] = []
    per_order = 200
    for _ in range((passes + BOOKLET * per_order - 1) // (BOOKLET * per_order)):
        order = finance.post("/orders", {"programme_id": programme, "booklets": per_order})
        for due in order["dues"]:
            Api(procs.url("issuer"), DEV_SECRET, Role.FUNDER, due["funder_id"]).post(
                f"/orders/{order['order_id']}/payments",
                {"amount_cents": due["amount_cents"], "bank_reference": "b"},
            )
        detail = finance.get(f"/orders/{order['order_id']}")
        codes += [p["code"] for b in detail["booklets"] for p in b["passes"]]
    print(f"issued {len(codes)} passes to {SITES} qualified sites")
    return codes[:passes], tokens


def wait_projection(database_url: str, passes: int) -> None:
    started = time.monotonic()

    def projected() -> bool:
        return asyncio.run(_scalar(database_url, "SELECT count(*) FROM redemption.passes")) >= passes

    wait_for("the passes to reach the redemption projection", projected, timeout=600, every=1)
    print(f"redemption projection caught up in {time.monotonic() - started:.1f} s")


def accepted_count(database_url: str) -> int:
    return asyncio.run(_scalar(database_url, "SELECT count(*) FROM redemption.redemptions"))


def outbox_lag(database_url: str) -> int:
    return asyncio.run(
        _scalar(database_url, "SELECT count(*) FROM redemption.outbox WHERE published_at IS NULL")
    )


async def _scalar(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def wrk(args: list[str], *, seconds: float, connections: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0.0,
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


if __name__ == "__main__":
    main()
