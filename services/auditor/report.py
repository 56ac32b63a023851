"""What the replay found: differences between recomputed and issued statements, and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from services.auditor import fastpath as fast

JsonDict = dict[str, Any]
EXAMPLES = 20  # a report lists this many cases per failed check; the count says how many in all


@dataclass
class Difference:
    kind: str  # "statement" | "funder-statement" | "db-statement" | "db-funder-statement"
    id: str
    window_id: int
    subject: str  # site id or funder id
    problem: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (recomputed, found)


@dataclass
class Check:
    """One conservation law: ok, how many cases break it, the first few, and what it means."""

    ok: bool
    count: int
    examples: list[str]
    note: str = ""
    pending: int = 0


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
    database_compared: bool = False
    differences: list[Difference] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    unreadable: int = 0
    not_needed: int = 0  # issuer reference events: read and counted, not parsed

    @property
    def ok(self) -> bool:
        return not self.differences and all(c.ok for c in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        """Deterministic: the same log gives the same report, byte for byte (no clock in it)."""
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
            "database_compared": self.database_compared,
            "unreadable_events": self.unreadable,
            "reference_events_not_needed": self.not_needed,
            "differences": [
                {**d.__dict__, "fields": {k: list(v) for k, v in d.fields.items()}} for d in self.differences
            ],
            "checks": {name: c.__dict__ for name, c in sorted(self.checks.items())},
            "violations": self.violations,
        }


def canonical(d: JsonDict) -> bytes:
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)


def compare(
    report: AuditReport,
    kind: str,
    id_: str,
    subject: str,
    mine: JsonDict,
    theirs: JsonDict,
    raw: msgspec.Raw | None = None,
    body: bytes | None = None,
) -> None:
    """Byte for byte on canonical JSON; on a mismatch, say which figures differ and why.

    `raw`, if given, is the JSON `theirs` was parsed from: when `mine` serialises to exactly those
    bytes, `theirs` is `mine` parsed back, so their canonical forms are equal too (orjson's
    round trip keeps every str, int, float, bool and null). Otherwise the canonical comparison
    decides, as without `raw`. `body`, if given, is `orjson.dumps(mine)`, already made."""
    if raw is not None and (orjson.dumps(mine) if body is None else body) == bytes(raw):
        return
    if canonical(mine) == canonical(theirs):
        return
    fields = {
        k: (mine.get(k), theirs.get(k))
        for k in sorted(mine.keys() | theirs.keys())
        if k != "lines" and canonical({"v": mine.get(k)}) != canonical({"v": theirs.get(k)})
    }
    problem = "differs from the log"
    if "lines" in mine and mine.get("lines") != theirs.get("lines"):
        problem = "lines differ from the log"
        fields["lines"] = (_line_count(mine), _line_count(theirs))
        fields.update(_first_differing_line(mine["lines"], theirs.get("lines")))
    if (
        kind.endswith("statement")
        and not kind.endswith("funder-statement")
        and not fast.own_digest_holds(theirs)
    ):
        problem = "digest does not match its own lines (forged or altered)"
    report.differences.append(Difference(kind, id_, mine["window_id"], subject, problem, fields))


def _line_count(d: JsonDict) -> int:
    lines = d.get("lines")
    return len(lines) if isinstance(lines, list) else -1


def _first_differing_line(mine: list[JsonDict], theirs: Any) -> dict[str, tuple[Any, Any]]:
    theirs = theirs if isinstance(theirs, list) else []
    for i in range(max(len(mine), len(theirs))):
        a = mine[i] if i < len(mine) else None
        b = theirs[i] if i < len(theirs) else None
        if a != b:
            return {f"lines[{i}]": (a, b)}
    return {}
