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


def varied_lines():  # type: ignore[no-untyped-def]
    """Two programmes with other shares, reversals, sub-second and equal timestamps, three sites."""
    from datetime import timedelta

    from schemas.events import FunderShare
    from tests.unit.factories import REGION, STATE

    two = (FunderShare(funder_id=STATE, share_bp=3333), FunderShare(funder_id=REGION, share_bp=6667))
    sites = [uuid.UUID(int=600 + i) for i in range(3)]
    events = []
    for n in range(60):
        r = redeemed(n, sites[n % 3], cents=1000 + 7 * (n % 5), shares=two if n % 4 == 0 else SHARES_)
        if n % 4 == 0:
            r = r.model_copy(update={"programme_id": uuid.UUID(int=101)})
        if n % 3 == 1:
            r = r.model_copy(update={"accepted_at": r.accepted_at + timedelta(microseconds=500 * n)})
        if n % 7 == 0:
            r = r.model_copy(update={"accepted_at": events[0].accepted_at if events else r.accepted_at})
        events.append(r)
        if n % 9 == 0:
            events.append(reversed_(r, n, window=1))
    return sites, events


SHARES_ = redeemed(0, SITE).funders


def test_the_fast_path_reads_each_event_as_the_core_does() -> None:
    """The statements are the core's own (`core.issue_all`); what the fast path must get right is
    the line each event becomes, the ids the fold keys on, and the call for funds from JSON."""
    from services.auditor import fastpath as fast

    _, events = varied_lines()
    funders = fast.FundersCache()
    funders.known.update(fast.line_of(e).line.funders for e in events)  # as the pydantic path adds them
    for n, event in enumerate(events):
        hot = fast.hot(envelope(event, n).to_bytes(), funders)
        assert hot is not None
        assert hot.line == core.line_of(core.ledger_line(event)) == fast.line_of(event).line
        assert (hot.event_id, hot.redemption_id, hot.window_id) == (
            str(envelope(event, n).event_id),
            str(event.redemption_id),
            event.window_id,
        )
    assert fast.hot(envelope(events[0], 0).to_bytes(), fast.FundersCache()) is None  # shares not vouched for
    assert fast.hot(envelope(closed(1, 0, 1), 0).to_bytes(), funders) is None  # not a redemption
    marker = closed(1, 0, partitions=1)
    theirs = core.statements_for_partition(marker, [core.ledger_line(e) for e in events])
    assert len(theirs) == 3
    assert fast.funder_statements(1, [s.model_dump(mode="json") for s in theirs]) == [
        f.model_dump(mode="json") for f in core.funder_statements(1, theirs)
    ]


def test_a_varied_log_reconciles_through_the_fast_path() -> None:
    _, events = varied_lines()
    marker = closed(1, 0, partitions=1)
    issued = core.statements_for_partition(marker, [core.ledger_line(e) for e in events])
    report = replay(log_of([*events, marker], [*issued, *core.funder_statements(1, issued)]))
    assert report.ok, report.as_json()
    assert report.redemptions == 60 and report.statements_issued == 3


def test_a_redemption_in_no_statement_breaks_conservation() -> None:
    events, issued = clean_log()
    extra = redeemed(7, uuid.UUID(int=777))
    records = log_of([extra, *events], issued)
    report = replay(records)
    check = report.checks["redemption_in_exactly_one_statement_or_dead_letter"]
    assert not check.ok and str(extra.redemption_id) in check.examples[0]


def test_an_event_the_fast_path_declines_is_judged_by_pydantic_with_the_same_result() -> None:
    """Upper-case ids are valid UUIDs to pydantic but not canonical: the fast path hands over."""
    events, issued = clean_log()
    records = log_of(events, issued)
    first = records[0]
    shouted = first.value.replace(str(SITE).encode(), str(SITE).upper().encode())
    assert shouted != first.value
    report = replay([first._replace(value=shouted), *records[1:]])
    assert report.ok, report.as_json()
    assert report.redemptions == 2 and report.unreadable == 0


def test_an_unparseable_statement_event_is_a_difference_not_a_crash() -> None:
    events, issued = clean_log()
    records = log_of(events, issued)
    clearing = next(i for i, r in enumerate(records) if r.topic == Topic.CLEARING)
    broken = records[clearing].value.replace(b'"total_cents":1000', b'"total_cents":1000.0')
    report = replay([*records[:clearing], records[clearing]._replace(value=broken), *records[clearing + 1 :]])
    assert not report.ok
    assert [d.fields.get("total_cents") for d in report.differences if d.kind == "statement"] == [
        (1000, 1000.0)
    ]


def test_the_cheap_uuid_check_agrees_with_the_regex() -> None:
    import re

    from hypothesis import given
    from hypothesis import strategies as st

    from services.auditor.fastpath import _UUID, six_canonical_uuids

    six = re.compile(rf"(?:{_UUID.pattern}\x00){{5}}{_UUID.pattern}")
    canonical = st.uuids().map(str)
    mangled = st.one_of(
        canonical.map(str.upper),
        canonical.map(lambda u: u.replace("-", "", 1) + "0"),
        canonical.map(lambda u: u[:-1] + "g"),
        canonical.map(lambda u: u[:8] + u[9] + "-" + u[10:]),
        st.text(min_size=36, max_size=36),
    )

    @given(st.lists(st.one_of(canonical, canonical, mangled), min_size=6, max_size=6))
    def agree(ids: list[str]) -> None:
        joined = "\x00".join(ids)
        assert six_canonical_uuids(joined) == (six.fullmatch(joined) is not None)

    agree()
    assert six_canonical_uuids("\x00".join([str(uuid.UUID(int=i)) for i in range(6)]))


def test_a_statement_is_routed_by_its_own_site_and_nothing_else_is() -> None:
    from services.auditor.fastpath import statement_site

    events, issued = clean_log()
    records = log_of(events, issued)
    sites = [statement_site(r.value) for r in records]
    assert sites.count(str(SITE)) == 1  # the StatementIssued; not the funder statements or redemptions
    assert statement_site(b"not json") is None and statement_site(b'{"type": "StatementIssued"}') is None


def test_an_issued_statement_is_matched_on_its_own_bytes_and_only_then(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from services.auditor import report as report_module

    events, issued = clean_log()
    canonical_calls: list[object] = []
    real = report_module.canonical
    monkeypatch.setattr(report_module, "canonical", lambda d: canonical_calls.append(d) or real(d))
    assert replay(log_of(events, issued)).ok
    # The site statement matched on the bytes it was issued as: only funder statements were re-serialised.
    assert not any("lines" in d for d in canonical_calls if isinstance(d, dict))
    # A total of 1000.0 equals 1000 for Python, not for the canonical bytes: still a difference.
    records = log_of(events, issued)
    record = next(r for r in records if b'"StatementIssued"' in r.value)
    forged = record._replace(value=record.value.replace(b'"total_cents":1000,', b'"total_cents":1000.0,'))
    assert forged.value != record.value
    report = replay([forged if r is record else r for r in records])
    assert not report.ok and report.differences[0].kind == "statement"


def test_what_pydantic_refuses_the_fast_path_refuses_too() -> None:
    """A week date or a basic-format timestamp is ISO 8601 to `datetime.fromisoformat`, not to
    pydantic; a workshop date must be a real day. The fast path declines them, pydantic judges:
    unreadable, as clearing finds them. A UTC form the fast path does not take (an offset, seven
    decimals) is still read, by pydantic."""
    from services.auditor import fastpath as fast

    events, issued = clean_log()
    records = log_of(events, issued)
    first = records[0]
    at = events[0].accepted_at.isoformat().replace("+00:00", "Z").encode()
    assert at in first.value
    day = events[0].workshop_date.isoformat().encode()
    funders = fast.FundersCache()
    funders.known.add(fast.line_of(events[0]).line.funders)
    assert fast.hot(first.value, funders) is not None
    for odd in (b"2026-W45-1T00:00:00Z", b"20261101T000000Z", b"2026-11-01T00:00:00.Z"):
        value = first.value.replace(at, odd)
        assert fast.hot(value, funders) is None
        report = replay([first._replace(value=value), *records[1:]])
        assert report.unreadable == 1 and report.redemptions == 1
    for odd in (b"2026-02-30", b"someday"):
        value = first.value.replace(day, odd)
        assert fast.hot(value, funders) is None
        assert replay([first._replace(value=value), *records[1:]]).unreadable == 1
    for fine in (at.replace(b"Z", b"+00:00"), at.replace(b"Z", b".0000000Z")):
        value = first.value.replace(at, fine)
        assert fast.hot(value, funders) is None
        report = replay([first._replace(value=value), *records[1:]])
        assert report.ok and report.redemptions == 2, report.as_json()
