"""The auditor's fold over the log, on synthetic logs (the Kafka reading is integration-tested)."""

import uuid

from schemas.topics import Topic
from services.auditor.replay import LogRecord, replay
from services.clearing.domain import statements as core
from tests.unit.factories import closed, envelope, redeemed, reversed_

SITE = uuid.UUID(int=501)


def log_of(events, issued):  # type: ignore[no-untyped-def]
    records = [LogRecord(Topic.REDEMPTIONS, 0, i, envelope(e, i).to_bytes()) for i, e in enumerate(events)]
    records += [
        LogRecord(Topic.CLEARING, 0, i, envelope(s, 1000 + i).to_bytes()) for i, s in enumerate(issued)
    ]
    return records


def clean_log():  # type: ignore[no-untyped-def]
    r1, r2 = redeemed(1, SITE), redeemed(2, SITE)
    events = [r1, r2, reversed_(r1, 1, window=1), closed(1, 0, partitions=1)]
    st = core.statement(SITE, closed(1, 0, 1), [core.ledger_line(e) for e in events[:3]])
    return events, [st, *core.funder_statements(1, [st])]


def test_a_clean_log_reconciles() -> None:
    events, issued = clean_log()
    report = replay(log_of(events, issued))
    assert report.ok, report.as_json()
    assert report.statements_recomputed == report.statements_issued == 1
    assert report.funder_statements_recomputed == 3
    assert report.total_cleared_cents == 1000


def test_a_forged_statement_is_reported_with_its_figures() -> None:
    events, issued = clean_log()
    forged = issued[0].model_copy(update={"total_cents": 99_999})
    report = replay(log_of(events, [forged, *issued[1:]]))
    assert not report.ok
    (diff,) = report.differences
    assert diff.subject == str(SITE) and diff.window_id == 1
    assert diff.fields["total_cents"] == (1000, 99_999)


def test_altered_lines_break_the_digest() -> None:
    events, issued = clean_log()
    line = issued[0].lines[0].model_copy(update={"amount_cents": 5})
    forged = issued[0].model_copy(update={"lines": (line, *issued[0].lines[1:])})
    report = replay(log_of(events, [forged, *issued[1:]]))
    assert "digest" in report.differences[0].problem


def test_a_republished_event_counts_once() -> None:
    events, issued = clean_log()
    records = log_of(events, issued)
    report = replay([records[0], *records])
    assert report.ok and report.redemptions == 2


def test_a_pass_redeemed_twice_is_a_violation() -> None:
    r1 = redeemed(1, SITE)
    twice = r1.model_copy(update={"redemption_id": uuid.UUID(int=42)})
    report = replay(log_of([r1, twice], []))
    assert any("redeemed twice" in v for v in report.violations)
