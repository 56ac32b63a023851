"""The auditor's replay against the real broker and database: a synthetic but complete log
(redemptions on four partitions, reversals, window markers, statements, funder statements,
notification outcomes) published to this module's topics, and clearing's tables in Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from confluent_kafka.admin import AdminClient
from kafka import KafkaProducer

from schemas.events import NotificationDelivered, Payload, ReversalNotificationDelivered
from schemas.topics import Topic, topic_name
from services.auditor.files import FileLog, export_log
from services.auditor.kafka_log import _UNJOINED_GROUP, KafkaLog
from services.auditor.parallel import replay_kafka_with_mode
from services.auditor.replay import replay
from services.clearing import pg_store
from services.clearing.domain import statements as core
from services.common.db import create_pool, migrate
from services.common.kafka import ensure_topics
from tests.unit.factories import closed, envelope, redeemed, reversed_

CLEARING_MIGRATIONS = Path(pg_store.__file__).parent / "migrations"
SITES = [uuid.UUID(int=700 + i) for i in range(8)]
PARTITIONS = 4


def _partition(site: uuid.UUID) -> int:
    return SITES.index(site) % PARTITIONS


def build_log():  # type: ignore[no-untyped-def]
    """(topic, partition, payload) in publication order, and the statements clearing issued."""
    out: list[tuple[Topic, int, Payload]] = []
    lines: dict[int, list[core.LedgerLine]] = {p: [] for p in range(PARTITIONS)}
    for n in range(200):
        site = SITES[n % len(SITES)]
        r = redeemed(n, site)
        out.append((Topic.REDEMPTIONS, _partition(site), r))
        lines[_partition(site)].append(core.ledger_line(r))
        if n % 17 == 0:
            rev = reversed_(r, n, window=1)
            out.append((Topic.REDEMPTIONS, _partition(site), rev))
            lines[_partition(site)].append(core.ledger_line(rev))
    statements = []
    for p in range(PARTITIONS):
        marker = closed(1, p, partitions=PARTITIONS)
        out.append((Topic.REDEMPTIONS, p, marker))
        statements += core.statements_for_partition(marker, lines[p])
    funders = core.funder_statements(1, statements)
    for st in statements:
        out.append((Topic.CLEARING, _partition(st.site_id), st))
        outcome = NotificationDelivered(
            notification_id=f"n-{st.statement_id}",
            statement_id=st.statement_id,
            site_id=st.site_id,
            channel="webhook",
            attempts=1,
        )
        out.append((Topic.NOTIFICATIONS, 0, outcome))
    out += [(Topic.CLEARING, 0, fs) for fs in funders]
    return out, statements, funders


def publish(bootstrap: str, prefix: str, events: list[tuple[Topic, int, Payload]], start: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, (topic, partition, payload) in enumerate(events):
        producer.send(
            topic_name(topic, prefix), envelope(payload, start + i).to_bytes(), key=b"k", partition=partition
        )
    producer.flush()
    producer.close()


async def fill_clearing_db(url: str, statements, funders) -> None:  # type: ignore[no-untyped-def]
    pool = await create_pool(url, "clearing")
    await migrate(pool, "clearing", CLEARING_MIGRATIONS)
    async with pool.acquire() as conn:
        # Parts are clearing's own bookkeeping for coverage; the auditor reads only statements.
        await pg_store.save_statements(conn, list(statements), {st.site_id: () for st in statements})
        for fs in funders:
            await pg_store.save_funder_statement(conn, fs)
    await pool.close()


@pytest.fixture(scope="module")
def log(bootstrap: str, topic_prefix: str, database_url: str):  # type: ignore[no-untyped-def]
    ensure_topics(bootstrap, topic_prefix)
    events, statements, funders = build_log()
    publish(bootstrap, topic_prefix, events)
    asyncio.run(fill_clearing_db(database_url, statements, funders))
    return events, statements, funders


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_a_clean_log_replays_to_exit_0_and_identical_reports(
    log, bootstrap: str, topic_prefix: str, database_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "AUDIT_DATABASE_URL": database_url,
    }
    first = cli("replay", "--report", str(tmp_path / "a.json"), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "everything matches" in first.stdout
    second = cli("replay", "--report", str(tmp_path / "b.json"), env=env)
    assert second.returncode == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["database_compared"] and report["statements"] == {"recomputed": 8, "issued": 8}
    assert report["redemptions"] == 200 and report["funder_statements"]["recomputed"] == 3


def test_the_parallel_replay_gives_the_sequential_report_and_joins_no_group(
    log, bootstrap: str, topic_prefix: str, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    from services.auditor.pg_statements import read_statements

    db = read_statements(database_url)
    sequential = replay(KafkaLog(bootstrap, topic_prefix).records(), db=db).as_json()
    parallel, mode = replay_kafka_with_mode(KafkaLog(bootstrap, topic_prefix), db=db, processes=2)
    assert mode == "parallel" and parallel.as_json() == sequential and sequential["ok"]
    strict, mode = replay_kafka_with_mode(KafkaLog(bootstrap, topic_prefix), strict_notifications=True)
    assert mode == "parallel" and strict.ok
    # The consumer library insists on a group id; the broker must never have heard of it.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(timeout=30)
    assert not listed.errors
    assert _UNJOINED_GROUP not in {g.group_id for g in listed.valid}


def test_replay_from_exported_files_equals_replay_from_kafka(
    log, bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    kafka_log = KafkaLog(bootstrap, topic_prefix)
    counts = export_log(kafka_log.records(), tmp_path / "log")
    assert sum(counts.values()) == len(log[0])
    from_files = replay(FileLog(tmp_path / "log").records()).as_json()
    from_kafka = replay(KafkaLog(bootstrap, topic_prefix).records()).as_json()
    assert from_files == from_kafka and from_files["ok"]
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": "nothing-here."}
    offline = cli("replay", "--from-dir", str(tmp_path / "log"), "--json", env=env)
    assert offline.returncode == 0 and json.loads(offline.stdout) == from_kafka


def test_the_replay_session_cannot_write(database_url: str, log) -> None:  # type: ignore[no-untyped-def]
    async def attempt() -> None:
        conn = await asyncpg.connect(
            database_url, server_settings={"default_transaction_read_only": "on", "search_path": "clearing"}
        )
        try:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("UPDATE statements SET total_cents = 0")
        finally:
            await conn.close()

    asyncio.run(attempt())


def test_a_statement_altered_in_the_database_is_reported(
    log, bootstrap: str, topic_prefix: str, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    _, statements, _ = log
    victim = statements[3]

    async def alter(total: int) -> None:
        conn = await asyncpg.connect(database_url, server_settings={"search_path": "clearing"})
        await conn.execute(
            "UPDATE statements SET total_cents = $1 WHERE statement_id = $2", total, victim.statement_id
        )
        await conn.close()

    asyncio.run(alter(victim.total_cents + 1000))
    try:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC_PREFIX": topic_prefix,
            "AUDIT_DATABASE_URL": database_url,
        }
        result = cli("replay", "--json", env=env)
        assert result.returncode == 1
        (diff,) = json.loads(result.stdout)["differences"]
        assert (
            diff["kind"] == "db-statement"
            and diff["subject"] == str(victim.site_id)
            and diff["window_id"] == 1
        )
        assert diff["fields"] == {"total_cents": [victim.total_cents, victim.total_cents + 1000]}
    finally:
        asyncio.run(alter(victim.total_cents))


def test_a_forged_statement_event_is_a_digest_mismatch(log, bootstrap: str, topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    _, statements, _ = log
    real = statements[5]
    line = real.lines[0].model_copy(update={"amount_cents": real.lines[0].amount_cents * 10})
    forged = real.model_copy(update={"lines": (line, *real.lines[1:])})
    publish(bootstrap, topic_prefix, [(Topic.CLEARING, 1, forged)], start=50_000)
    report = replay(KafkaLog(bootstrap, topic_prefix).records())
    assert not report.ok
    diffs = [d for d in report.differences if d.kind == "statement"]
    assert [(d.subject, d.window_id) for d in diffs] == [(str(real.site_id), 1)]
    assert "digest" in diffs[0].problem
    # A difference is not the parallel path's to report: the whole log is replayed in one process.
    again, mode = replay_kafka_with_mode(KafkaLog(bootstrap, topic_prefix), processes=2)
    assert mode == "sequential" and again.as_json() == report.as_json()


def late_reversals_log():  # type: ignore[no-untyped-def]
    """Window 1's redemptions on four partitions; some reversed after window 1 closed (negative
    lines of window 2); the statements of both windows, every statement's outcome, and one outcome
    per late reversal (its site's webhook)."""
    out: list[tuple[Topic, int, Payload]] = []
    lines: dict[int, list[core.LedgerLine]] = {p: [] for p in range(PARTITIONS)}
    redemptions = [redeemed(n, SITES[n % len(SITES)]) for n in range(40)]
    for r in redemptions:
        out.append((Topic.REDEMPTIONS, _partition(r.site_id), r))
        lines[_partition(r.site_id)].append(core.ledger_line(r))
    late = [reversed_(r, n, window=2) for n, r in enumerate(redemptions) if n % 5 == 0]
    statements = []
    for window, events in ((1, []), (2, late)):
        for rv in events:
            out.append((Topic.REDEMPTIONS, _partition(rv.site_id), rv))
            lines[_partition(rv.site_id)].append(core.ledger_line(rv))
        for p in range(PARTITIONS):
            marker = closed(window, p, partitions=PARTITIONS)
            out.append((Topic.REDEMPTIONS, p, marker))
            statements += core.statements_for_partition(marker, lines[p])
    for window in (1, 2):
        of_window = [st for st in statements if st.window_id == window]
        out += [(Topic.CLEARING, 0, fs) for fs in core.funder_statements(window, of_window)]
    for st in statements:
        out.append((Topic.CLEARING, _partition(st.site_id), st))
        out.append((Topic.NOTIFICATIONS, 0, _delivered(st)))
    told = [
        ReversalNotificationDelivered(
            notification_id=f"msg_rv_{rv.reversal_id.hex}",
            reversal_id=rv.reversal_id,
            redemption_id=rv.redemption_id,
            site_id=rv.site_id,
            window_id=2,
            channel="webhook",
            attempts=1,
        )
        for rv in late
    ]
    return out + [(Topic.NOTIFICATIONS, 1, o) for o in told], told


def _delivered(st) -> NotificationDelivered:  # type: ignore[no-untyped-def]
    return NotificationDelivered(
        notification_id=f"n-{st.statement_id}",
        statement_id=st.statement_id,
        site_id=st.site_id,
        channel="webhook",
        attempts=1,
    )


def test_late_reversals_and_their_outcomes_are_judged_alike_on_every_core(
    bootstrap: str, topic_prefix: str
) -> None:
    prefix = f"{topic_prefix}late."
    ensure_topics(bootstrap, prefix)
    events, told = late_reversals_log()
    publish(bootstrap, prefix, events)
    sequential = replay(KafkaLog(bootstrap, prefix).records(), strict_notifications=True)
    parallel, mode = replay_kafka_with_mode(
        KafkaLog(bootstrap, prefix), strict_notifications=True, processes=2
    )
    assert mode == "parallel" and parallel.as_json() == sequential.as_json()
    assert sequential.ok and sequential.reversals == len(told) == 8, sequential.as_json()
    assert sequential.checks["one_notification_outcome_per_late_reversal"].ok
    # The same reversal told twice on its channel (another event): broken, and judged in one process.
    publish(bootstrap, prefix, [(Topic.NOTIFICATIONS, 1, told[3])], start=60_000)
    again = replay(KafkaLog(bootstrap, prefix).records(), strict_notifications=True)
    check = again.checks["one_notification_outcome_per_late_reversal"]
    assert not again.ok and check.count == 1 and str(told[3].reversal_id) in check.examples[0]
    parallel, mode = replay_kafka_with_mode(
        KafkaLog(bootstrap, prefix), strict_notifications=True, processes=2
    )
    assert mode == "sequential" and parallel.as_json() == again.as_json()
