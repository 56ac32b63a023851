"""The replay itself: a pure fold of the event log through clearing's arithmetic. No I/O.

Statements are recomputed and compared as JSON (`fastpath`), byte for byte: an issued statement
matches when its canonical JSON is the recomputed one's. Only what differs goes through pydantic,
to say what differs."""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import orjson
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import (
    DeadLetterRecorded,
    NotificationDelivered,
    NotificationFailed,
    PassRedeemed,
    RedemptionReversed,
    ReversalNotificationDelivered,
    ReversalNotificationFailed,
    WindowClosed,
    parse_payload,
)
from schemas.topics import Topic
from services.auditor import fastpath as fast
from services.auditor.checks import Checks, conservation_checks
from services.auditor.report import AuditReport, Difference, compare
from services.clearing.domain import statements as core

__all__ = ["AuditReport", "DbStatements", "Difference", "LogRecord", "replay"]
JsonDict = dict[str, Any]
_RAW = frozenset(("StatementIssued", "FunderStatementIssued"))
# Issuer reference data: clearing does not read it, so neither does the replay (it is counted).
_NOT_NEEDED = frozenset(
    (
        "FunderRegistered",
        "ProgrammeRegistered",
        "SiteRegistered",
        "SiteQualificationGranted",
        "SiteQualificationWithdrawn",
        "OrderPlaced",
        "FunderPaymentRecorded",
        "BookletActivated",
        "PassCancelled",
    )
)


class LogRecord(NamedTuple):  # a tuple: a frozen dataclass costs ~1 µs more per record
    topic: Topic
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


@dataclass
class DbStatements:
    """What the clearing database holds, as read by `services.auditor.pg_statements`."""

    statements: dict[str, JsonDict] = field(default_factory=dict)
    funder_statements: dict[str, JsonDict] = field(default_factory=dict)


@dataclass
class State:
    seen: set[str] = field(default_factory=set)
    funders: fast.FundersCache = field(default_factory=fast.FundersCache)
    # The lines of each (window, partition) whose marker has not been read yet.
    lines: dict[tuple[int, int], list[core.Line]] = field(default_factory=lambda: defaultdict(list))
    markers: dict[int, dict[int, WindowClosed]] = field(default_factory=lambda: defaultdict(dict))
    recomputed: dict[str, JsonDict] = field(default_factory=dict)
    # Each recomputed statement's JSON as clearing emits it (`core.Issued.body`).
    bodies: dict[str, bytes] = field(default_factory=dict)
    issued: dict[str, JsonDict] = field(default_factory=dict)
    # The JSON each issued statement was parsed from: comparing bytes first spares re-serialising both sides.
    issued_raw: dict[str, msgspec.Raw] = field(default_factory=dict)
    funder_issued: dict[str, JsonDict] = field(default_factory=dict)
    accepted: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # id -> window, partition, offset
    live: dict[str, str] = field(default_factory=dict)  # pass id -> live redemption id
    twice: list[str] = field(default_factory=list)
    issued_again: list[tuple[str, str, JsonDict]] = field(default_factory=list)  # (type, id, payload)
    dead_letters: list[DeadLetterRecorded] = field(default_factory=list)
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # Every reversal applied, as (reversal id, redemption id, window id); whether it came after
    # its redemption's window closed is judged at the end, on every redemption of the log.
    reversals_made: list[tuple[str, str, int]] = field(default_factory=list)
    # The notifier's outcomes for those: (reversal id, notification id, channel, redemption id, window id).
    reversal_outcomes: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # the rare cases
    events: int = 0
    redemptions: int = 0
    reversals: int = 0


def replay(
    records: Iterable[LogRecord], *, db: DbStatements | None = None, strict_notifications: bool = False
) -> AuditReport:
    """Records must come in offset order within each partition (any interleaving of partitions)."""
    return finish(fold(records), db=db, strict_notifications=strict_notifications)


def fold(records: Iterable[LogRecord], state: State | None = None) -> State:
    state = state or State()
    # The fold keeps millions of small objects and frees none: the cyclic collector would only
    # rescan them (measured: a third of the replay time on the 1M bench log).
    collecting = gc.isenabled()
    gc.disable()
    try:
        _fold(state, records)
    finally:
        if collecting:
            gc.enable()
    return state


def _fold(state: State, records: Iterable[LogRecord]) -> None:
    """`read_one` on every record, with what it does for a redemption or a reversal read by the
    fast path (nearly all of a log) written out here, on local names."""
    seen, live, accepted, lines, funders = state.seen, state.live, state.accepted, state.lines, state.funders
    n, redemptions, reversals = state.events, 0, 0
    at: tuple[int, int] | None = None  # the (window, partition) whose list `bucket` is
    bucket: list[core.Line] = []
    try:
        for record in records:
            n += 1
            hot = fast.hot(record[3], funders)
            if hot is None:
                _read_other(state, record)
                at = None  # a marker takes its partition's lines away
                continue
            event_id, redemption_id, window, line = hot
            if event_id in seen:
                continue  # a relay republished it after a crash: it counts once
            seen.add(event_id)
            partition = record[1]
            pass_id = line.pass_id
            if line.kind == "redemption":
                redemptions += 1
                if pass_id in live:
                    state.twice.append(f"pass {pass_id} redeemed twice without a reversal")
                live[pass_id] = line.ref_id
                accepted[line.ref_id] = (window, partition, record[2])
            else:
                reversals += 1
                if live.get(pass_id) == redemption_id:
                    del live[pass_id]
                state.reversals_made.append((line.ref_id, redemption_id, window))
            if at != (window, partition):
                at = (window, partition)
                bucket = lines[at]
            bucket.append(line)
    finally:
        state.events = n
        state.redemptions += redemptions
        state.reversals += reversals


def finish(state: State, *, db: DbStatements | None, strict_notifications: bool) -> AuditReport:
    report = AuditReport(
        events_read=state.events,
        redemptions=state.redemptions,
        reversals=state.reversals,
        unreadable=state.counts["unreadable"],
        not_needed=state.counts["not_needed"],
    )
    _compare(state, report, db)
    checks: Checks = conservation_checks(state, report, strict_notifications=strict_notifications)
    report.checks = checks
    report.violations = [v for c in checks.values() if not c.ok for v in c.examples]
    return report


def read_one(state: State, record: LogRecord) -> None:
    hot = fast.hot(record.value, state.funders)
    if hot is None:
        _read_other(state, record)
    elif hot.event_id not in state.seen:
        state.seen.add(hot.event_id)
        _apply_line(state, record, hot)


def _read_other(state: State, record: LogRecord) -> None:
    """A record the redemptions' fast path (`fast.hot`) did not take."""
    try:
        env = fast.ENVELOPE.decode(record.value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        _read_slowly(state, record)  # pydantic says whether it is readable at all
        return
    if env.schema_version == 1:
        type_ = env.type
        if type_ in _NOT_NEEDED:
            state.counts["not_needed"] += 1
            return
        if type_ in _RAW:
            payload = _payload(state, type_, env.payload)
            first = _first_time(state, env.event_id) if type(payload) is dict else None
            if first is not None:
                if first:  # compared as JSON; validated only if it differs from the recomputation
                    _issued(state, type_, payload, env.payload)
                return
    _read_slowly(state, record)


def _payload(state: State, type_: str, raw: msgspec.Raw) -> Any:
    """A statement's payload as JSON. One byte for byte as recomputed (the common case) is the
    recomputed statement, parsed back: that dict itself, not a second copy of its lines."""
    if type_ == "StatementIssued":
        sid = fast.statement_id(raw)
        if sid is not None and state.bodies.get(sid) == bytes(raw):
            return state.recomputed[sid]
    return orjson.loads(memoryview(raw))


def _first_time(state: State, event_id: Any) -> bool | None:
    """None when the id is not a canonical UUID (pydantic decides); False when already seen."""
    if type(event_id) is not str or not fast.is_uuid(event_id):
        return None
    if event_id in state.seen:
        return False  # a relay republished it after a crash: it counts once
    state.seen.add(event_id)
    return True


def _read_slowly(state: State, record: LogRecord) -> None:
    try:
        envelope = Envelope.from_bytes(record.value)
        payload = parse_payload(envelope)
    except (ValidationError, ValueError):
        state.counts["unreadable"] += 1
        return
    event_id = str(envelope.event_id)
    if event_id in state.seen:
        return
    state.seen.add(event_id)
    if isinstance(payload, PassRedeemed | RedemptionReversed):
        hot = fast.line_of(payload)
        state.funders.known.add(hot.line.funders)
        _apply_line(state, record, hot)
    elif isinstance(payload, WindowClosed):
        state.markers[payload.window_id][payload.partition] = payload
        for st in fast.statements(payload, state.lines.pop((payload.window_id, payload.partition), [])):
            sid = str(st.statement_id)
            state.recomputed[sid], state.bodies[sid] = st.payload, st.body
    elif isinstance(payload, NotificationDelivered | NotificationFailed):
        state.outcomes[str(payload.statement_id)][payload.channel] += 1
    elif isinstance(payload, ReversalNotificationDelivered | ReversalNotificationFailed):
        state.reversal_outcomes.append(
            (
                str(payload.reversal_id),
                payload.notification_id,
                payload.channel,
                str(payload.redemption_id),
                payload.window_id,
            )
        )
    elif isinstance(payload, DeadLetterRecorded):
        state.dead_letters.append(payload)
    else:
        kind = type(payload).__name__
        if kind in _RAW:  # a v>1 or oddly shaped statement: keep its JSON for the comparison
            _issued(state, kind, payload.model_dump(mode="json"))


def _issued(state: State, type_: str, payload: JsonDict, raw: msgspec.Raw | None = None) -> None:
    """The first event for a statement id is *the* issued one; any other is compared too.
    `raw`: the JSON `payload` was parsed from (kept for a statement's comparison)."""
    bucket = state.issued if type_ == "StatementIssued" else state.funder_issued
    id_ = str(payload.get("statement_id" if type_ == "StatementIssued" else "funder_statement_id"))
    if id_ in bucket:
        state.issued_again.append((type_, id_, payload))
    else:
        bucket[id_] = payload
        if raw is not None and bucket is state.issued:
            state.issued_raw[id_] = raw


def _apply_line(state: State, record: LogRecord, hot: fast.Hot) -> None:
    """A redemption or reversal read for the first time (`_fold` does the same, inlined)."""
    line = hot.line
    if line.kind == "redemption":
        state.redemptions += 1
        if line.pass_id in state.live:
            state.twice.append(f"pass {line.pass_id} redeemed twice without a reversal")
        state.live[line.pass_id] = line.ref_id
        state.accepted[line.ref_id] = (hot.window_id, record.partition, record.offset)
    else:
        state.reversals += 1
        if state.live.get(line.pass_id) == hot.redemption_id:
            del state.live[line.pass_id]
        state.reversals_made.append((line.ref_id, hot.redemption_id, hot.window_id))
    state.lines[(hot.window_id, record.partition)].append(line)


def closed_windows(state: State) -> list[int]:
    return sorted(
        w
        for w, parts in state.markers.items()
        if parts and len(parts) == next(iter(parts.values())).partition_count
    )


def recomputed_funder_statements(state: State, windows: list[int]) -> dict[str, JsonDict]:
    by_window: dict[int, list[JsonDict]] = defaultdict(list)
    for st in state.recomputed.values():
        by_window[st["window_id"]].append(st)
    return {
        fs["funder_statement_id"]: fs
        for window in windows
        for fs in fast.funder_statements(window, by_window.get(window, []))
    }


def _compare(state: State, report: AuditReport, db: DbStatements | None) -> None:
    report.windows_closed = closed_windows(state)
    funders = recomputed_funder_statements(state, report.windows_closed)
    report.statements_recomputed = len(state.recomputed)
    report.statements_issued = len(state.issued)
    report.funder_statements_recomputed = len(funders)
    report.funder_statements_issued = len(state.funder_issued)
    report.total_cleared_cents = sum(st["total_cents"] for st in state.recomputed.values())
    _compare_all(
        report, "statement", state.recomputed, state.issued, "issued", state.issued_raw, state.bodies
    )
    _compare_all(report, "funder-statement", funders, state.funder_issued, "issued")
    for type_, id_, again in state.issued_again:
        if type_ == "StatementIssued":
            _compare_all(
                report,
                "statement",
                {id_: state.recomputed[id_]} if id_ in state.recomputed else {},
                {id_: again},
                "issued",
            )
        else:
            _compare_all(
                report,
                "funder-statement",
                {id_: funders[id_]} if id_ in funders else {},
                {id_: again},
                "issued",
            )
    if db is not None:
        report.database_compared = True
        _compare_all(report, "db-statement", state.recomputed, db.statements, "database")
        _compare_all(report, "db-funder-statement", funders, db.funder_statements, "database")
    report.differences.sort(key=lambda d: (d.kind, d.window_id, d.subject, d.id))


def _compare_all(
    report: AuditReport,
    kind: str,
    mine: Mapping[str, JsonDict],
    theirs: Mapping[str, JsonDict],
    where: str,
    raw: Mapping[str, msgspec.Raw] | None = None,
    bodies: Mapping[str, bytes] | None = None,
) -> None:
    """`raw`, when given, holds the JSON some of `theirs` were parsed from, and `bodies` the JSON
    of some of `mine` (see `compare`)."""
    subject = "funder_id" if "funder" in kind else "site_id"
    for sid, st in mine.items():
        other = theirs.get(sid)
        if other is None:
            report.differences.append(
                Difference(kind, sid, st["window_id"], st[subject], f"recomputed but not {where}")
            )
        else:
            compare(
                report,
                kind,
                sid,
                st[subject],
                st,
                other,
                None if raw is None else raw.get(sid),
                None if bodies is None else bodies.get(sid),
            )
    for sid, other in theirs.items():
        if sid not in mine:
            report.differences.append(
                Difference(
                    kind,
                    sid,
                    _int(other.get("window_id")),
                    str(other.get(subject)),
                    f"{where} but not in the log",
                )
            )


def _int(value: Any) -> int:
    return value if type(value) is int else -1
