"""Coverage: per programme and funder, money paid in vs redeemed-and-owed vs paid out.

A statement is paid only if, after it, no funder's payouts for any programme exceed what that
funder has paid in for it; otherwise it is held (flagged), never paid silently. Statements are
taken in window order, then site order, so the same inputs always hold the same statements.
What a statement pays out is its net (domain.netting): its own funder parts less the parts of
the earlier negative statements it settles. Pure: no I/O."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.clearing.domain.netting import Netting, net, net_parts
from services.clearing.domain.statements import FunderPart

Key = tuple[uuid.UUID, uuid.UUID]  # (programme id, funder id)


@dataclass(frozen=True)
class StatementDue:
    statement_id: uuid.UUID
    window_id: int
    site_id: uuid.UUID
    total_cents: int
    parts: tuple[FunderPart, ...]


@dataclass(frozen=True)
class CoverageRow:
    programme_id: uuid.UUID
    funder_id: uuid.UUID
    ordered_cents: int  # what the funder's orders made it due
    paid_in_cents: int  # what it has paid
    owed_cents: int  # its share of every cleared statement (redeemed, net of reversals)
    paid_out_cents: int  # its share of what is paid to sites (net of the negative statements settled)
    held_cents: int  # its share of the (net) payouts held for lack of coverage

    @property
    def covered(self) -> bool:
        return self.held_cents == 0


@dataclass(frozen=True)
class Coverage:
    rows: tuple[CoverageRow, ...]
    held: frozenset[uuid.UUID]
    netting: Mapping[uuid.UUID, Netting]


def assess(
    statements: Iterable[StatementDue],
    *,
    paid_in: Mapping[Key, int],
    ordered: Mapping[Key, int] | None = None,
) -> Coverage:
    owed: dict[Key, int] = defaultdict(int)
    paid_out: dict[Key, int] = defaultdict(int)
    held_amounts: dict[Key, int] = defaultdict(int)
    held: set[uuid.UUID] = set()
    ordered_dues = sorted(statements, key=lambda s: (s.window_id, str(s.site_id)))
    netting = net(ordered_dues)
    for st in ordered_dues:
        for part in st.parts:
            owed[_key(part)] += part.amount_cents
        if st.total_cents <= 0:
            continue  # carried over: nothing is paid, a later statement of the site settles it
        parts = net_parts(st, netting)
        if _fits(parts, paid_out, paid_in):
            for part in parts:
                paid_out[_key(part)] += part.amount_cents
        else:
            held.add(st.statement_id)
            for part in parts:
                held_amounts[_key(part)] += part.amount_cents
    ordered = ordered or {}
    keys = sorted({*owed, *paid_in, *ordered}, key=lambda k: (str(k[0]), str(k[1])))
    rows = tuple(
        CoverageRow(
            programme_id=p,
            funder_id=f,
            ordered_cents=ordered.get((p, f), 0),
            paid_in_cents=paid_in.get((p, f), 0),
            owed_cents=owed[(p, f)],
            paid_out_cents=paid_out[(p, f)],
            held_cents=held_amounts[(p, f)],
        )
        for p, f in keys
    )
    return Coverage(rows, frozenset(held), netting)


def _fits(parts: Sequence[FunderPart], paid_out: Mapping[Key, int], paid_in: Mapping[Key, int]) -> bool:
    after: dict[Key, int] = defaultdict(int)
    for part in parts:
        after[_key(part)] += part.amount_cents
    return all(paid_out.get(k, 0) + amount <= paid_in.get(k, 0) for k, amount in after.items() if amount > 0)


def _key(part: FunderPart) -> Key:
    return (part.programme_id, part.funder_id)
