"""P5: closing a window of 1,000,000 redemptions over 10,000 sites → every statement, the funder
statements (calls for funds) and the SEPA file, and the clearing worker's peak memory.

The window's ledger lines are loaded into clearing's table first (COPY), as the worker would have
applied them, and the 10,000 sites into the issuer's registry; the timed part starts when the
WindowClosed markers go on the redemptions topic and ends when the SEPA file is in hand. Issuer and
clearing run as their own processes; the worker's peak RSS is its VmHWM. The worker's own
per-stage timings (reading lines, building statements, writing them, outbox, funder statements,
payout plan, payout details from the issuer, SEPA build + XSD validation) are read from its
/metrics. `make bench-window-close`; BENCH_REDEMPTIONS and BENCH_SITES scale it down."""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from kafka import KafkaProducer

from bench.common import env_float, fresh_database, infra, result_line, topic_prefix
from schemas.envelope import Envelope
from schemas.events import WindowClosed
from schemas.topics import TOPICS, Topic, topic_name
from services.clearing import pg_store
from services.cli import scenario
from services.cli.processes import ServiceProcesses
from services.common.auth import Role, issue_token
from services.common.settings import DEV_SECRET

TARGET_SECONDS = 30.0
SHARES = (5000, 3000, 2000)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(database_url: str, redemptions: int, site_count: int, partitions: int) -> list[uuid.UUID]:
    """Sites into the issuer's registry, the window's lines into clearing's ledger, and the
    funders' payments that cover them (else coverage would hold every statement)."""
    import random

    rng = random.Random(5)
    sites = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(site_count)]
    funders = [uuid.UUID(int=rng.getrandbits(128)) for _ in SHARES]
    programme = uuid.UUID(int=rng.getrandbits(128))
    shares_json = json.dumps(
        [{"funder_id": str(f), "share_bp": s} for f, s in zip(funders, SHARES, strict=True)]
    )
    shares_id = pg_store.shares_id((str(f), s) for f, s in zip(funders, SHARES, strict=True))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO clearing.ledger_shares (shares_id, funders) VALUES ($1, $2)", shares_id, shares_json
        )
        await conn.copy_records_to_table(
            "sites",
            schema_name="issuer",
            columns=["site_id", "name", "siret", "iban", "bic", "contact_email"],
            records=[
                (s, f"Lieu {n}", scenario.siret(rng), scenario.iban(rng), "BNPAFRPP", f"lieu{n}@example.org")
                for n, s in enumerate(sites)
            ],
        )
        rows = []
        for n in range(redemptions):
            site_index = n % site_count
            rows.append(
                (
                    uuid.UUID(int=rng.getrandbits(128)),
                    "redemption",
                    sites[site_index],
                    uuid.UUID(int=rng.getrandbits(128)),
                    programme,
                    1,
                    1000,
                    shares_id,
                    T0 + timedelta(seconds=n),
                    site_index % partitions,
                )
            )
        await conn.copy_records_to_table(
            "ledger_lines",
            schema_name="clearing",
            columns=[
                "ref_id",
                "kind",
                "site_id",
                "pass_id",
                "programme_id",
                "window_id",
                "amount_cents",
                "shares_id",
                "at",
                "partition",
            ],
            records=rows,
        )
        total = redemptions * 1000
        await conn.copy_records_to_table(
            "funder_payments",
            schema_name="clearing",
            columns=["payment_id", "order_id", "programme_id", "funder_id", "amount_cents"],
            records=[
                (uuid.uuid4(), uuid.uuid4(), programme, f, total * s // 10_000)
                for f, s in zip(funders, SHARES, strict=True)
            ],
        )
        await conn.execute("ANALYZE clearing.ledger_lines")
    finally:
        await conn.close()
    return sites


def send_markers(bootstrap: str, prefix: str, partitions: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    now = datetime.now(UTC)
    for p in range(partitions):
        marker = WindowClosed(
            window_id=1,
            partition=p,
            partition_count=partitions,
            opened_at=T0,
            closed_at=now,
            next_window_id=2,
        )
        envelope = Envelope(
            event_id=uuid.uuid4(),
            type=marker.TYPE,
            schema_version=marker.VERSION,
            occurred_at=now,
            producer="bench",
            key=f"window-1-{p}",
            payload=marker.model_dump(mode="json"),
        )
        producer.send(topic_name(Topic.REDEMPTIONS, prefix), envelope.to_bytes(), partition=p)
    producer.flush(30)
    producer.close()


async def wait_cleared(database_url: str, sites: int, timeout: float) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while not await conn.fetchval("SELECT count(*) = $1 FROM clearing.funder_statements", len(SHARES)):
            if time.monotonic() > deadline:
                done = await conn.fetchval("SELECT count(*) FROM clearing.statements")
                raise SystemExit(f"window not cleared after {timeout} s ({done} of {sites} statements)")
            await asyncio.sleep(0.1)
        statements = await conn.fetchval("SELECT count(*) FROM clearing.statements")
        if statements != sites:
            raise SystemExit(f"{statements} statements for {sites} sites")
    finally:
        await conn.close()


async def issuer_rate(url: str, sites: list[uuid.UUID]) -> float:
    token = issue_token(DEV_SECRET, Role.SERVICE, "bench")
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as http:

        async def one(site: uuid.UUID) -> None:
            async with gate:
                (await http.get(f"/sites/{site}/payout-details")).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in sites))
        return len(sites) / (time.perf_counter() - started)


def stage_seconds(url: str) -> dict[str, float]:
    """What the worker says each stage of the close and of the SEPA file took (/metrics)."""
    found: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('passclear_clearing_stage_seconds_total{stage="'):
            name, value = line.removeprefix('passclear_clearing_stage_seconds_total{stage="').split('"} ')
            found[name] = float(value)
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    redemptions = int(env_float("BENCH_REDEMPTIONS", 1_000_000))
    site_count = int(env_float("BENCH_SITES", 10_000))
    bootstrap, base_url = infra()
    database_url = fresh_database(base_url, "window_close")
    prefix = topic_prefix("window-close")
    partitions = TOPICS[Topic.REDEMPTIONS].partitions
    procs = ServiceProcesses(
        Path(tempfile.mkdtemp(prefix="bench-window-close-")),
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url, "KAFKA_TOPIC_PREFIX": prefix},
        ports={"issuer": free_port(), "clearing": free_port()},
    )
    try:
        procs.start_all()
        procs.wait_all_ready()
        t = time.perf_counter()
        sites = asyncio.run(load(database_url, redemptions, site_count, partitions))
        print(
            f"loaded {redemptions:,} ledger lines over {site_count:,} sites in {time.perf_counter() - t:.1f} s"
        )
        pid = procs.pid("clearing")
        assert pid is not None
        print(f"clearing worker RSS before the close: {peak_rss_mb(pid):.0f} MB (peak so far)")

        started = time.perf_counter()
        send_markers(bootstrap, prefix, partitions)
        asyncio.run(wait_cleared(database_url, len(sites), timeout=600))
        cleared = time.perf_counter()
        token = issue_token(DEV_SECRET, Role.FINANCE, "bench")
        r = httpx.get(
            f"{procs.url('clearing')}/windows/1/payouts/sepa",
            headers={"authorization": f"Bearer {token}"},
            timeout=600,
        )
        done = time.perf_counter()
        if r.status_code != 200 or r.headers.get("x-transfers") != str(site_count):
            raise SystemExit(f"SEPA file: {r.status_code} {r.headers.get('x-transfers')} {r.text[:300]}")
        expected_total = redemptions * 1000
        if r.headers["x-total-cents"] != str(expected_total):
            raise SystemExit(f"SEPA total {r.headers['x-total-cents']} != {expected_total}")
        peak = peak_rss_mb(pid)
        stages = stage_seconds(procs.url("clearing"))
        probe = asyncio.run(issuer_rate(procs.url("issuer"), sites[:1000]))
        print(f"issuer payout-details alone (1,000 GETs, 32 at a time): {probe:,.0f} requests/s")
        total = done - started
        print(f"statements ({site_count:,}) and funder statements ({len(SHARES)}): {cleared - started:.1f} s")
        print(
            f"SEPA file ({site_count:,} transfers, {len(r.content) / 1e6:.1f} MB, XSD-validated): {done - cleared:.1f} s"
        )
        print(
            f"window close total: {total:.1f} s (target ≤ {TARGET_SECONDS:.0f} s: {'met' if total <= TARGET_SECONDS else 'NOT met'})"
        )
        print("stages inside the clearing worker (wall seconds, the 4 partitions' closes added up):")
        for stage, seconds in stages.items():
            print(f"  {stage:<20} {seconds:6.2f} s")
        print(f"clearing worker peak RSS (VmHWM): {peak:.0f} MB")
        result_line("window_close_seconds", total, "s", f"<= {TARGET_SECONDS:.0f}")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
