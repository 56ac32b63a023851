"""P3: replay and verify a log of 1,000,000 redemptions (plus issuer, statement and notification
events) from Kafka; target ≤ 10 s. The replay is timed end to end as an auditor runs it: the
`passclear audit replay --json` process, from its start to its exit with the report (imports,
offsets, every process it forks, every check). The same run measures the raw read of the same
topics by one plain reader (one consumer, every partition, no parsing: the replay may use several)
and prints replay time / raw read time as the ratio.

Publishes the log once to a fresh topic prefix (statements computed by clearing's pure core, as
the clearing service would issue them), measures, then deletes its topics. Sizes: AUDIT_BENCH_N
redemptions (default 1,000,000) over AUDIT_BENCH_SITES sites (2,000) and two windows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient

from schemas.envelope import Envelope
from schemas.events import (
    BookletActivated,
    FunderRegistered,
    FunderShare,
    NotificationDelivered,
    Payload,
    ProgrammeRegistered,
    SiteRegistered,
    WindowClosed,
)
from schemas.pass_codes import ALPHABET, make_code
from schemas.topics import TOPICS, Topic, topic_name
from services.auditor.kafka_log import KafkaLog
from services.clearing.domain import statements as core
from services.common.kafka import COMPRESSION, ensure_topics

N = int(os.environ.get("AUDIT_BENCH_N", 1_000_000))
SITES = int(os.environ.get("AUDIT_BENCH_SITES", 2_000))
TARGET_S = 10.0
PASSES_PER_BOOKLET = 10
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NS = uuid.UUID("5b1c0d7e-8a51-4b0c-9a63-2f4d1c7e0a11")
FUNDERS = [uuid.uuid5(NS, f"funder-{i}") for i in range(3)]
SHARES = tuple(
    FunderShare(funder_id=f, share_bp=bp) for f, bp in zip(FUNDERS, (5000, 3000, 2000), strict=True)
)
PROGRAMME = uuid.uuid5(NS, "programme")
FACE = 1000


def bootstrap_servers() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    from bench.common import infra

    return infra()[0]


def envelope_bytes(payload: Payload, n: int, key: str) -> bytes:
    return Envelope(
        event_id=uuid.uuid5(NS, f"event-{n}"),
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=T0,
        producer="bench",
        key=key,
        payload=payload.model_dump(mode="json"),
    ).to_bytes()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def redemption_bytes(n: int, site: uuid.UUID, window: int, at: datetime) -> tuple[bytes, core.LedgerLine]:
    """A PassRedeemed envelope as the relay publishes it (built as JSON: pydantic would take 25 s)."""
    rid, pid = uuid.uuid5(NS, f"r-{n}"), uuid.uuid5(NS, f"p-{n}")
    payload = {
        "redemption_id": str(rid),
        "pass_id": str(pid),
        "site_id": str(site),
        "programme_id": str(PROGRAMME),
        "window_id": window,
        "face_value_cents": FACE,
        "funders": [{"funder_id": str(f.funder_id), "share_bp": f.share_bp} for f in SHARES],
        "learning_path": "basic-skills",
        "workshop_date": at.date().isoformat(),
        "accepted_at": _iso(at),
    }
    env = {
        "event_id": str(uuid.uuid5(NS, f"event-r-{n}")),
        "type": "PassRedeemed",
        "schema_version": 1,
        "occurred_at": _iso(at),
        "producer": "redemption",
        "key": str(site),
        "payload": payload,
    }
    line = core.LedgerLine("redemption", rid, site, pid, PROGRAMME, window, FACE, SHARES, at)
    return orjson.dumps(env), line


def build_log() -> dict[Topic, list[tuple[int, bytes]]]:
    parts = TOPICS[Topic.REDEMPTIONS].partitions
    log: dict[Topic, list[tuple[int, bytes]]] = defaultdict(list)
    sites = [uuid.uuid5(NS, f"site-{i}") for i in range(SITES)]
    issuer: list[Payload] = [
        FunderRegistered(funder_id=f, name=f"funder {i}", kind="region") for i, f in enumerate(FUNDERS)
    ]
    issuer.append(
        ProgrammeRegistered(
            programme_id=PROGRAMME,
            name="bench",
            territory="BFC",
            face_value_cents=FACE,
            passes_per_booklet=PASSES_PER_BOOKLET,
            valid_from=date(2026, 1, 1),
            valid_until=date(2027, 12, 31),
            grace_days=30,
            learning_paths=("basic-skills",),
            funders=SHARES,
        )
    )
    issuer += [
        SiteRegistered(site_id=s, name=f"site {i}", siret="73282932000074") for i, s in enumerate(sites)
    ]
    log[Topic.ISSUER] += [(0, envelope_bytes(p, i, "issuer")) for i, p in enumerate(issuer)]
    body = (ALPHABET * 4)[:10]
    for b in range(N // PASSES_PER_BOOKLET):
        booklet = {
            "booklet_id": str(uuid.uuid5(NS, f"b-{b}")),
            "order_id": str(uuid.uuid5(NS, "order")),
            "programme_id": str(PROGRAMME),
            "face_value_cents": FACE,
            "valid_until": "2027-12-31",
            "grace_days": 30,
            "passes": [
                {"pass_id": str(uuid.uuid5(NS, f"p-{b * PASSES_PER_BOOKLET + k}")), "code": make_code(body)}
                for k in range(PASSES_PER_BOOKLET)
            ],
        }
        env = {
            "event_id": str(uuid.uuid5(NS, f"event-b-{b}")),
            "type": BookletActivated.TYPE,
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "producer": "issuer",
            "key": str(PROGRAMME),
            "payload": booklet,
        }
        log[Topic.ISSUER].append((0, orjson.dumps(env)))
    statements = []
    per_window = N // 2
    for window in (1, 2):
        lines: dict[int, list[core.LedgerLine]] = defaultdict(list)
        opened = T0 + timedelta(days=30 * (window - 1))
        for n in range(per_window * (window - 1), per_window * window):
            site_index = n % SITES
            at = opened + timedelta(seconds=2 * (n - per_window * (window - 1)))
            raw, line = redemption_bytes(n, sites[site_index], window, at)
            log[Topic.REDEMPTIONS].append((site_index % parts, raw))
            lines[site_index % parts].append(line)
        for p in range(parts):
            marker = WindowClosed(
                window_id=window,
                partition=p,
                partition_count=parts,
                opened_at=opened,
                closed_at=opened + timedelta(days=30),
                next_window_id=window + 1,
            )
            log[Topic.REDEMPTIONS].append(
                (p, envelope_bytes(marker, 10_000_000 + window * 100 + p, "marker"))
            )
            window_statements = core.statements_for_partition(marker, lines.pop(p))
            statements += window_statements
            log[Topic.CLEARING] += [
                (p, envelope_bytes(st, 20_000_000 + len(log[Topic.CLEARING]) + i, str(st.site_id)))
                for i, st in enumerate(window_statements)
            ]
        funders = core.funder_statements(window, [s for s in statements if s.window_id == window])
        log[Topic.CLEARING] += [
            (0, envelope_bytes(fs, 30_000_000 + window * 10 + i, "f")) for i, fs in enumerate(funders)
        ]
    for i, st in enumerate(statements):
        outcome = NotificationDelivered(
            notification_id=f"n-{i}",
            statement_id=st.statement_id,
            site_id=st.site_id,
            channel="webhook",
            attempts=1,
        )
        log[Topic.NOTIFICATIONS].append((i % 2, envelope_bytes(outcome, 40_000_000 + i, str(st.site_id))))
    return log


async def publish(bootstrap: str, prefix: str, log: dict[Topic, list[tuple[int, bytes]]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=COMPRESSION,  # as the services' relays write the log
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        for topic, records in log.items():
            name = topic_name(topic, prefix)
            pending = []
            for partition, value in records:
                pending.append(await producer.send(name, value, partition=partition))
                if len(pending) >= 50_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


def main() -> None:
    bootstrap = bootstrap_servers()
    # AUDIT_BENCH_PREFIX re-measures a log published by an earlier run kept with AUDIT_BENCH_KEEP=1.
    reuse = os.environ.get("AUDIT_BENCH_PREFIX")
    prefix = reuse or f"bench-audit-{int(time.time())}."
    print(f"P3 audit replay: {N:,} redemptions over {SITES:,} sites, 2 windows (shared 2-core machine)")
    try:
        if not reuse:
            build_and_publish(bootstrap, prefix)
        t = time.perf_counter()
        read = sum(1 for _ in KafkaLog(bootstrap, prefix).records())
        raw_s = time.perf_counter() - t
        print(
            f"raw read (one plain reader, no parsing): {read:,} records in {raw_s:.2f} s = {read / raw_s:,.0f} records/s"
        )
        replay_s, report, how = timed_cli_replay(bootstrap, prefix)
        print(
            f"replay + verify (`passclear audit replay` process, start to report, {how}): "
            f"{report['events_read']:,} events in {replay_s:.2f} s = {report['events_read'] / replay_s:,.0f} events/s"
        )
        print(
            f"  ok={report['ok']} redemptions={report['redemptions']:,} statements={report['statements']['recomputed']:,}/"
            f"{report['statements']['issued']:,} funder statements={report['funder_statements']['recomputed']}/"
            f"{report['funder_statements']['issued']} differences={len(report['differences'])}"
        )
        if not report["ok"] or report["redemptions"] != N or report["events_read"] != read:
            print(json.dumps(report, default=str)[:2000])
            raise SystemExit("the replay did not reconcile the bench log")
        print(
            f"target ≤ {TARGET_S:.0f} s: {'met' if replay_s <= TARGET_S else 'NOT met'}; "
            f"replay/raw read = {replay_s / raw_s:.2f}"
        )
        print(
            json.dumps(
                {
                    "metric": "audit_replay_1m_seconds",
                    "value": round(replay_s, 2),
                    "unit": "s",
                    "target": f"<= {TARGET_S:.0f}",
                    "baseline": round(raw_s, 2),
                    "ratio": round(replay_s / raw_s, 3),
                }
            )
        )
    finally:
        if not os.environ.get("AUDIT_BENCH_KEEP"):
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            admin.delete_topics([topic_name(t, prefix) for t in Topic])
            admin.close()


def timed_cli_replay(bootstrap: str, prefix: str) -> tuple[float, dict[str, Any], str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": prefix}
    env.pop("AUDIT_DATABASE_URL", None)
    command = [sys.executable, "-m", "services.cli", "audit", "replay", "--json"]
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t
    if done.returncode not in (0, 1):
        raise SystemExit(f"the replay failed: {done.stderr[-2000:]}")
    how = next((line for line in done.stderr.splitlines() if line.startswith("replayed")), "?")
    return seconds, json.loads(done.stdout), how


def build_and_publish(bootstrap: str, prefix: str) -> None:
    t = time.perf_counter()
    log = build_log()
    total = sum(len(v) for v in log.values())
    megabytes = sum(len(b) for v in log.values() for _, b in v) / 1e6
    print(
        f"built the log: {total:,} events, {megabytes:,.0f} MB ({time.perf_counter() - t:.1f} s, statements by clearing's core)"
    )
    ensure_topics(bootstrap, prefix)
    t = time.perf_counter()
    asyncio.run(publish(bootstrap, prefix, log))
    print(f"published in {time.perf_counter() - t:.1f} s to {prefix}*")


if __name__ == "__main__":
    main()
