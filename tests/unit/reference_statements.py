"""The clearing core's statement as it was first written (pydantic models per line, json.dumps
for the digest): every statement issued so far was computed by it. The core now builds plain
dicts and bytes; the tests hold it to this, byte for byte, so that old logs still verify."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from schemas.envelope import Envelope
from schemas.events import FunderAmount, FunderShare, StatementIssued, StatementLine, WindowClosed
from services.clearing.domain.statements import (
    FunderPart,
    LedgerLine,
    expected_payout_date,
    statement_id,
)
from services.common.money import split_by_shares


def funder_parts(lines: Sequence[LedgerLine]) -> tuple[FunderPart, ...]:
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
    totals: dict[uuid.UUID, int] = {}
    for part in funder_parts(lines):
        totals[part.funder_id] = totals.get(part.funder_id, 0) + part.amount_cents
    return tuple(FunderAmount(funder_id=f, amount_cents=a) for f, a in totals.items())


def digest(items: Iterable[dict[str, object]]) -> str:
    canonical = json.dumps(list(items), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ordered(lines: Sequence[LedgerLine]) -> list[LedgerLine]:
    return sorted(lines, key=lambda line: (line.at, str(line.ref_id)))


def statement(site_id: uuid.UUID, window: WindowClosed, lines: Sequence[LedgerLine]) -> StatementIssued:
    ordered_lines = ordered(lines)
    return StatementIssued(
        statement_id=statement_id(window.window_id, site_id),
        window_id=window.window_id,
        site_id=site_id,
        period_start=window.opened_at,
        period_end=window.closed_at,
        redemptions=sum(1 for line in ordered_lines if line.kind == "redemption"),
        reversals=sum(1 for line in ordered_lines if line.kind == "reversal"),
        total_cents=sum(line.amount_cents for line in ordered_lines),
        funder_amounts=funder_split(ordered_lines),
        lines=tuple(
            StatementLine(
                kind=line.kind,
                ref_id=line.ref_id,
                pass_id=line.pass_id,
                programme_id=line.programme_id,
                amount_cents=line.amount_cents,
            )
            for line in ordered_lines
        ),
        digest=digest(
            {
                "kind": line.kind,
                "ref_id": str(line.ref_id),
                "pass_id": str(line.pass_id),
                "programme_id": str(line.programme_id),
                "amount_cents": line.amount_cents,
            }
            for line in ordered_lines
        ),
        expected_payout_date=expected_payout_date(window.closed_at),
    )


def envelope_bytes(envelope: Envelope, st: StatementIssued) -> bytes:
    """The outbox row's body as the worker first wrote it."""
    return envelope.model_copy(update={"payload": st.model_dump(mode="json")}).to_bytes()
