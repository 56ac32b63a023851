"""P4: from StatementIssued published to the signed webhook received, p50/p99 over 10,000
statements (target p99 <= 1 s).

The notifier runs as its own process (uvicorn, as deployed) on a fresh database and topic
prefix; 1,000 sites each register an endpoint on a real loopback receiver that verifies every
Standard Webhooks signature; 10 windows of statements are published at a steady rate straight
onto the clearing topic. Latency = receiver's arrival time - the time the statement was handed
to the producer. BENCH_STATEMENTS, BENCH_SITES and BENCH_RATE (statements/s) scale it."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from bench.common import fresh_database, infra, topic_prefix
from schemas.events import FunderAmount, StatementIssued
from schemas.topics import Topic, topic_name
from services.cli.processes import ServiceProcesses
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role, issue_token
from services.common.events import EventFactory
from services.common.kafka import make_producer
from services.common.ports import RandomIds, SystemClock
from services.common.settings import DEV_SECRET

TARGET_P99_MS = 1000.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def statement(site_id: uuid.UUID, window_id: int, funder: uuid.UUID) -> StatementIssued:
    return StatementIssued(
        statement_id=uuid.uuid4(),
        window_id=window_id,
        site_id=site_id,
        period_start=datetime(2026, window_id, 1, tzinfo=UTC)
        if window_id <= 12
        else datetime(2026, 1, 1, tzinfo=UTC),
        period_end=datetime(2026, 12, 31, tzinfo=UTC),
        redemptions=3,
        reversals=0,
        total_cents=3000,
        funder_amounts=(FunderAmount(funder_id=funder, amount_cents=3000),),
        lines=(),
        digest="sha256:bench",
        expected_payout_date=date(2027, 1, 15),
    )


async def register(url: str, base: str, sites: list[uuid.UUID], receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as api:
        sem = asyncio.Semaphore(20)

        async def one(n: int, site: uuid.UUID) -> None:
            token = issue_token(DEV_SECRET, Role.SITE, str(site))
            async with sem:
                r = await api.post(
                    "/webhooks", json={"url": f"{base}/s{n}"}, headers={"authorization": f"Bearer {token}"}
                )
            r.raise_for_status()
            receiver.secrets[f"/s{n}"] = r.json()["secret"]

        await asyncio.gather(*(one(n, s) for n, s in enumerate(sites)))


def publish_steadily(
    bootstrap: str, topic: str, statements: list[StatementIssued], rate: float
) -> dict[str, float]:
    events = EventFactory("clearing", SystemClock(), RandomIds())
    producer = make_producer(bootstrap)
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    try:
        for i, st in enumerate(statements):
            due = start + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            envelope = events.envelope(st, key=str(st.site_id))
            sent_at[str(st.statement_id)] = time.time()
            producer.send(topic, key=envelope.key.encode(), value=envelope.to_bytes())
        producer.flush(60)
    finally:
        producer.close(5)
    return sent_at


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> int:
    n = int(os.environ.get("BENCH_STATEMENTS", 10_000))
    n_sites = int(os.environ.get("BENCH_SITES", 1_000))
    rate = float(os.environ.get("BENCH_RATE", 250))
    bootstrap, base_url = infra()
    database_url = fresh_database(base_url, "notifier")
    prefix = topic_prefix("notifier")
    receiver = WebhookReceiver()
    base = receiver.start()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "KAFKA_TOPIC_PREFIX": prefix,
        "PASSCLEAR_PROFILE": "dev",
    }
    procs = ServiceProcesses(
        Path(tempfile.mkdtemp(prefix="bench-notifier-")), env, ports={"notifier": free_port()}
    )
    procs.start("notifier")
    try:
        procs.wait_ready("notifier")
        sites = [uuid.uuid4() for _ in range(n_sites)]
        asyncio.run(register(procs.url("notifier"), base, sites, receiver))
        funder = uuid.uuid4()
        statements = [statement(sites[i % n_sites], 1 + i // n_sites, funder) for i in range(n)]
        print(
            f"notifier P4: {n} statements to {n_sites} sites at {rate:.0f}/s, notifier as a process, shared machine"
        )
        t0 = time.monotonic()
        sent_at = publish_steadily(bootstrap, topic_name(Topic.CLEARING, prefix), statements, rate)
        deadline = time.monotonic() + 300
        while len({r.payload["data"]["statement_id"] for r in receiver.received if r.verified}) < n:
            if time.monotonic() > deadline:
                print(f"timed out: {len(receiver.received)} webhooks received", file=sys.stderr)
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
    finally:
        procs.stop("notifier")
        receiver.stop()

    first: dict[str, float] = {}
    ids: dict[str, set[str]] = {}
    for r in receiver.received:
        if not r.verified:
            continue
        sid = r.payload["data"]["statement_id"]
        first.setdefault(sid, r.received_at)
        ids.setdefault(sid, set()).add(r.headers["webhook-id"])
    latencies = [(first[s] - sent_at[s]) * 1000 for s in first if s in sent_at]
    unverified = sum(1 for r in receiver.received if not r.verified)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"received {len(first)}/{n} statements, {len(receiver.received)} POSTs, {unverified} unverified")
    print(f"webhook-ids per statement: max {max(len(v) for v in ids.values()) if ids else 0}")
    print(
        f"latency publish -> webhook received: p50 {p50:.0f} ms, p90 {percentile(latencies, 0.9):.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(latencies):.0f} ms, mean {statistics.fmean(latencies):.0f} ms"
    )
    print(
        f"throughput: {len(first) / elapsed:.0f} webhooks/s over {elapsed:.1f} s (publish rate {rate:.0f}/s)"
    )
    print(
        f"target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if p99 <= TARGET_P99_MS and len(first) == n else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "metric": "notifier_statement_to_webhook_p99",
                "value": round(p99, 1),
                "unit": "ms",
                "target": f"<= {TARGET_P99_MS:.0f}",
                "baseline": None,
                "ratio": None,
            }
        )
    )
    return 0 if len(first) == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
