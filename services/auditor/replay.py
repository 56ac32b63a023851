"""The replay itself: a pure fold of the event log through clearing's core. No I/O."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import (
    FunderStatementIssued,
    PassRedeemed,
    RedemptionReversed,
    StatementIssued,
    WindowClosed,
    parse_payload,
)
from schemas.topics import Topic
from services.clearing.domain import statements as core


@dataclass(frozen=True)
class LogRecord:
    topic: Topic
    partition: int
    offset: int
    value: bytes


@dataclass
class Difference:
    kind: str  # "statement" | "funder-statement"
    id: str
    window_id: int
    subject: str  # site id or funder id
    problem: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass
class AuditReport:
    events_read: int = 0
    redemptions: int = 0
    reversals: int = 0
    windows_closed: list[int] = field(default_factory=list)
    statements_recomputed: int = 0
    statements_issued: int = 0
    funder_statements_recomputed: int = 0
    funder_statements_issued: int = 0
    total_cleared_cents: int = 0
    differences: list[Difference] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    unreadable: int = 0

    @property
    def ok(self) -> bool:
        return not self.differences and not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events_read": self.events_read,
            "redemptions": self.redemptions,
            "reversals": self.reversals,
            "windows_closed": self.windows_closed,
            "statements": {"recomputed": self.statements_recomputed, "issued": self.statements_issued},
            "funder_statements": {
                "recomputed": self.funder_statements_recomputed,
                "issued": self.funder_statements_issued,
            },
            "total_cleared_cents": self.total_cleared_cents,
            "unreadable_events": self.unreadable,
            "differences": [d.__dict__ for d in self.differences],
            "violations": self.violations,
        }


@dataclass
class _State:
    seen: set[uuid.UUID] = field(default_factory=set)
    lines: dict[tuple[int, int], list[core.LedgerLine]] = field(default_factory=lambda: defaultdict(list))
    markers: dict[int, dict[int, WindowClosed]] = field(default_factory=lambda: defaultdict(dict))
    recomputed: dict[uuid.UUID, StatementIssued] = field(default_factory=dict)
    issued: dict[uuid.UUID, StatementIssued] = field(default_factory=dict)
    funder_issued: dict[uuid.UUID, FunderStatementIssued] = field(default_factory=dict)
    live: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # pass id -> live redemption id


def replay(records: Iterable[LogRecord]) -> AuditReport:
    """Records must come in offset order within each partition (any interleaving of partitions)."""
    report, state = AuditReport(), _State()
    for record in records:
        report.events_read += 1
        try:
            envelope = Envelope.from_bytes(record.value)
            payload = parse_payload(envelope)
        except (ValidationError, ValueError):
            report.unreadable += 1
            continue
        if envelope.event_id in state.seen:
            continue  # a relay republished it after a crash: it counts once
        state.seen.add(envelope.event_id)
        _apply(state, report, record, payload)
    _compare(state, report)
    return report


def _apply(state: _State, report: AuditReport, record: LogRecord, payload: object) -> None:
    if isinstance(payload, PassRedeemed):
        report.redemptions += 1
        if payload.pass_id in state.live:
            report.violations.append(f"pass {payload.pass_id} redeemed twice without a reversal")
        state.live[payload.pass_id] = payload.redemption_id
        state.lines[(payload.window_id, record.partition)].append(core.ledger_line(payload))
    elif isinstance(payload, RedemptionReversed):
        report.reversals += 1
        if state.live.get(payload.pass_id) == payload.redemption_id:
            del state.live[payload.pass_id]
        state.lines[(payload.window_id, record.partition)].append(core.ledger_line(payload))
    elif isinstance(payload, WindowClosed):
        state.markers[payload.window_id][payload.partition] = payload
        for st in core.statements_for_partition(
            payload, state.lines.get((payload.window_id, payload.partition), [])
        ):
            state.recomputed[st.statement_id] = st
    elif isinstance(payload, StatementIssued):
        state.issued[payload.statement_id] = payload
    elif isinstance(payload, FunderStatementIssued):
        state.funder_issued[payload.funder_statement_id] = payload


def _compare(state: _State, report: AuditReport) -> None:
    report.windows_closed = sorted(
        w
        for w, parts in state.markers.items()
        if parts and len(parts) == next(iter(parts.values())).partition_count
    )
    report.statements_recomputed = len(state.recomputed)
    report.statements_issued = len(state.issued)
    report.total_cleared_cents = sum(st.total_cents for st in state.recomputed.values())
    for sid, mine in state.recomputed.items():
        if sum(fa.amount_cents for fa in mine.funder_amounts) != mine.total_cents:
            report.violations.append(f"statement {sid}: funder amounts do not sum to the total")
        _compare_one(
            report, "statement", str(sid), mine.window_id, str(mine.site_id), mine, state.issued.get(sid)
        )
    for sid, theirs in state.issued.items():
        if sid not in state.recomputed:
            report.differences.append(
                Difference(
                    "statement", str(sid), theirs.window_id, str(theirs.site_id), "issued but not in the log"
                )
            )
    _compare_funders(state, report)


def _compare_funders(state: _State, report: AuditReport) -> None:
    by_window: dict[int, list[StatementIssued]] = defaultdict(list)
    for st in state.recomputed.values():
        by_window[st.window_id].append(st)
    recomputed = {
        fs.funder_statement_id: fs
        for window in report.windows_closed
        for fs in core.funder_statements(window, by_window.get(window, []))
    }
    report.funder_statements_recomputed = len(recomputed)
    report.funder_statements_issued = len(state.funder_issued)
    for fid, mine in recomputed.items():
        theirs = state.funder_issued.get(fid)
        _compare_one(report, "funder-statement", str(fid), mine.window_id, str(mine.funder_id), mine, theirs)
    for fid, theirs in state.funder_issued.items():
        if fid not in recomputed:
            report.differences.append(
                Difference(
                    "funder-statement",
                    str(fid),
                    theirs.window_id,
                    str(theirs.funder_id),
                    "issued but not in the log",
                )
            )


def _compare_one(
    report: AuditReport, kind: str, id_: str, window: int, subject: str, mine: Any, theirs: Any
) -> None:
    if theirs is None:
        report.differences.append(Difference(kind, id_, window, subject, "recomputed but never issued"))
        return
    a, b = mine.model_dump(mode="json"), theirs.model_dump(mode="json")
    if a == b:
        return
    fields = {k: (a.get(k), b.get(k)) for k in a if a.get(k) != b.get(k) and k != "lines"}
    problem = "differs from the log"
    if a.get("lines") != b.get("lines"):
        problem = "lines differ from the log"
    if isinstance(theirs, StatementIssued) and theirs.digest != core.digest(
        line.model_dump(mode="json") for line in theirs.lines
    ):
        problem = "digest does not match its own lines (forged or altered)"
    report.differences.append(Difference(kind, id_, window, subject, problem, fields))
