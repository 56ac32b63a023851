"""From a window's ledger lines to statements and funder statements. Pure: no I/O, no clock."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from schemas.events import (
    FunderAmount,
    FunderShare,
    FunderStatementIssued,
    PassRedeemed,
    RedemptionReversed,
    StatementIssued,
    StatementLine,
    WindowClosed,
)
from services.common.money import split_by_shares

STATEMENT_NS = uuid.UUID("0b6a8f52-6f0c-4a43-b3e4-2f7f6a1c9d01")
# Public bodies pay within 30 days of the demand (délai global de paiement).
PAYOUT_DELAY = timedelta(days=30)


@dataclass(frozen=True)
class LedgerLine:
    """One redemption (+) or reversal (−) as a site's ledger holds it."""

    kind: str
    ref_id: uuid.UUID
    site_id: uuid.UUID
    pass_id: uuid.UUID
    programme_id: uuid.UUID
    window_id: int
    amount_cents: int
    funders: tuple[FunderShare, ...]
    at: datetime


def ledger_line(event: PassRedeemed | RedemptionReversed) -> LedgerLine:
    if isinstance(event, PassRedeemed):
        return LedgerLine(
            "redemption",
            event.redemption_id,
            event.site_id,
            event.pass_id,
            event.programme_id,
            event.window_id,
            event.face_value_cents,
            event.funders,
            event.accepted_at,
        )
    return LedgerLine(
        "reversal",
        event.reversal_id,
        event.site_id,
        event.pass_id,
        event.programme_id,
        event.window_id,
        -event.face_value_cents,
        event.funders,
        event.reversed_at,
    )


def statement_id(window_id: int, site_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(STATEMENT_NS, f"statement:{window_id}:{site_id}")


def funder_statement_id(window_id: int, funder_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(STATEMENT_NS, f"funder-statement:{window_id}:{funder_id}")


@dataclass(frozen=True)
class FunderPart:
    """What one funder owes of one programme's lines in a statement."""

    programme_id: uuid.UUID
    funder_id: uuid.UUID
    amount_cents: int


def funder_parts(lines: Sequence[LedgerLine]) -> tuple[FunderPart, ...]:
    """Split per programme (each has its own shares), programmes in id order."""
    per_programme: dict[uuid.UUID, int] = defaultdict(int)
    shares: dict[uuid.UUID, tuple[FunderShare, ...]] = {}
    for line in lines:
        per_programme[line.programme_id] += line.amount_cents
        shares.setdefault(line.programme_id, line.funders)
    parts: list[FunderPart] = []
    for programme_id in sorted(per_programme, key=str):
        funders = shares[programme_id]
        split = split_by_shares(per_programme[programme_id], [f.share_bp for f in funders])
        parts.extend(FunderPart(programme_id, f.funder_id, a) for f, a in zip(funders, split, strict=True))
    return tuple(parts)


def funder_split(lines: Sequence[LedgerLine]) -> tuple[FunderAmount, ...]:
    """Split per programme, then add up per funder."""
    totals: dict[uuid.UUID, int] = {}
    for part in funder_parts(lines):
        totals[part.funder_id] = totals.get(part.funder_id, 0) + part.amount_cents
    return tuple(FunderAmount(funder_id=f, amount_cents=a) for f, a in totals.items())


def digest(items: Iterable[dict[str, object]]) -> str:
    canonical = json.dumps(list(items), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def statement(site_id: uuid.UUID, window: WindowClosed, lines: Sequence[LedgerLine]) -> StatementIssued:
    ordered = sorted(lines, key=lambda line: (line.at, str(line.ref_id)))
    statement_lines = tuple(
        StatementLine(
            kind=line.kind,
            ref_id=line.ref_id,
            pass_id=line.pass_id,
            programme_id=line.programme_id,
            amount_cents=line.amount_cents,
        )
        for line in ordered
    )
    return StatementIssued(
        statement_id=statement_id(window.window_id, site_id),
        window_id=window.window_id,
        site_id=site_id,
        period_start=window.opened_at,
        period_end=window.closed_at,
        redemptions=sum(1 for line in ordered if line.kind == "redemption"),
        reversals=sum(1 for line in ordered if line.kind == "reversal"),
        total_cents=sum(line.amount_cents for line in ordered),
        funder_amounts=funder_split(ordered),
        lines=statement_lines,
        digest=digest(_canonical(line) for line in ordered),
        expected_payout_date=expected_payout_date(window.closed_at),
    )


def _canonical(line: LedgerLine) -> dict[str, object]:
    """What StatementLine.model_dump(mode="json") gives, without the model (same digest)."""
    return {
        "kind": line.kind,
        "ref_id": str(line.ref_id),
        "pass_id": str(line.pass_id),
        "programme_id": str(line.programme_id),
        "amount_cents": line.amount_cents,
    }


def statements_for_partition(window: WindowClosed, lines: Iterable[LedgerLine]) -> list[StatementIssued]:
    """The statements of every site whose ledger had lines in this window on this partition."""
    by_site: dict[uuid.UUID, list[LedgerLine]] = defaultdict(list)
    for line in lines:
        if line.window_id == window.window_id:
            by_site[line.site_id].append(line)
    return [statement(site, window, by_site[site]) for site in sorted(by_site, key=str)]


def parts_for_partition(
    window: WindowClosed, lines: Iterable[LedgerLine]
) -> dict[uuid.UUID, tuple[FunderPart, ...]]:
    """Per site of this partition, the per-programme funder parts behind its statement."""
    by_site: dict[uuid.UUID, list[LedgerLine]] = defaultdict(list)
    for line in lines:
        if line.window_id == window.window_id:
            by_site[line.site_id].append(line)
    ordered = {s: sorted(ls, key=lambda line: (line.at, str(line.ref_id))) for s, ls in by_site.items()}
    return {site: funder_parts(ordered[site]) for site in sorted(ordered, key=str)}


class HasFunderAmounts(Protocol):
    """A statement as far as the call for funds needs it."""

    @property
    def statement_id(self) -> uuid.UUID: ...

    @property
    def funder_amounts(self) -> tuple[FunderAmount, ...]: ...


def funder_statements(window_id: int, statements: Iterable[HasFunderAmounts]) -> list[FunderStatementIssued]:
    """Each funder's share of every site statement of the window: the call for funds."""
    per_funder: dict[uuid.UUID, list[tuple[str, int]]] = defaultdict(list)
    for st in sorted(statements, key=lambda s: str(s.statement_id)):
        for fa in st.funder_amounts:
            per_funder[fa.funder_id].append((str(st.statement_id), fa.amount_cents))
    return [
        FunderStatementIssued(
            funder_statement_id=funder_statement_id(window_id, funder_id),
            window_id=window_id,
            funder_id=funder_id,
            amount_cents=sum(amount for _, amount in items),
            statements=len(items),
            digest=digest({"statement_id": s, "amount_cents": a} for s, a in items),
        )
        for funder_id, items in sorted(per_funder.items(), key=lambda kv: str(kv[0]))
    ]


def expected_payout_date(closed_at: datetime) -> date:
    return closed_at.date() + PAYOUT_DELAY
