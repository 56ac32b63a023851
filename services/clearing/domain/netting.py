"""Netting: a site's negative statement is recovered from its next positive statement(s).

Statements and calls for funds stay what each window's events say (gross): netting is a payout
concern only. It is a pure function of the statement history, in window order per site: each
negative statement becomes a debt, and every later positive statement of the same site settles
the oldest open debts first (FIFO), up to its own total. The site is paid the net. Since the
history of windows up to W does not change once W is cleared, the deductions of W's statements
never change either, and a cent of debt is deducted once, whatever the number of plans asked.

Netting does not depend on coverage: a held statement keeps its deductions and is paid net when
the funders' payments release it. Pure: no I/O."""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from services.clearing.domain.statements import FunderPart
from services.common.money import split_by_weights

Key = tuple[uuid.UUID, uuid.UUID]  # (programme id, funder id)


class Statement(Protocol):
    @property
    def statement_id(self) -> uuid.UUID: ...

    @property
    def window_id(self) -> int: ...

    @property
    def site_id(self) -> uuid.UUID: ...

    @property
    def total_cents(self) -> int: ...


class Due(Statement, Protocol):
    """A statement as far as netting needs it."""

    @property
    def parts(self) -> tuple[FunderPart, ...]: ...


@dataclass(frozen=True)
class Deduction:
    """Part of an earlier negative statement's deficit, settled out of a positive statement.

    `parts` say whose funds the settled cents are, per programme and funder (they sum to
    `amount_cents`): the debt's own funder parts, apportioned by largest remainder."""

    settles: uuid.UUID  # the negative statement
    settles_window_id: int
    by: uuid.UUID  # the positive statement it is deducted from
    by_window_id: int
    amount_cents: int
    parts: tuple[FunderPart, ...]


@dataclass(frozen=True)
class Netting:
    statement_id: uuid.UUID
    window_id: int
    site_id: uuid.UUID
    total_cents: int  # the statement's own (gross) total
    deductions: tuple[Deduction, ...] = ()  # on a positive statement: what it settles
    settled_by: tuple[Deduction, ...] = ()  # on a negative one: what has settled it so far

    @property
    def net_cents(self) -> int:
        """What the site is paid for this statement (0 for a statement at zero or below)."""
        return max(self.total_cents, 0) - sum(d.amount_cents for d in self.deductions)

    @property
    def outstanding_cents(self) -> int:
        """What a negative statement still owes (0 once settled, and for any other statement)."""
        return max(-self.total_cents, 0) - sum(d.amount_cents for d in self.settled_by)


@dataclass
class _Debt:
    due: Due
    settled: int = 0
    settlements: list[Deduction] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return -self.due.total_cents - self.settled

    def settle(self, by: Due, amount: int) -> Deduction:
        weights = [-p.amount_cents for p in self.due.parts]
        # Parts of the cumulative settled amount, so that the deductions of a debt add up to
        # exactly its own (negated) parts once it is fully settled.
        before = split_by_weights(self.settled, weights)
        self.settled += amount
        after = split_by_weights(self.settled, weights)
        parts = tuple(
            FunderPart(p.programme_id, p.funder_id, a - b)
            for p, a, b in zip(self.due.parts, after, before, strict=True)
        )
        deduction = Deduction(
            self.due.statement_id, self.due.window_id, by.statement_id, by.window_id, amount, parts
        )
        self.settlements.append(deduction)
        return deduction


def net(statements: Iterable[Due]) -> dict[uuid.UUID, Netting]:
    """The netting of every statement that settles or is a debt, from the whole history of the
    sites' statements. A statement not in the answer has nothing deducted and owes nothing."""
    history = list(statements)
    indebted = {st.site_id for st in history if st.total_cents < 0}
    by_site: dict[uuid.UUID, list[Due]] = defaultdict(list)
    for st in history:
        if st.site_id in indebted:  # the common case, a site never negative, costs one look-up
            by_site[st.site_id].append(st)
    out: dict[uuid.UUID, Netting] = {}
    for site_history in by_site.values():
        out.update(_net_site(sorted(site_history, key=lambda s: s.window_id)))
    return out


def netting_of(netting: Mapping[uuid.UUID, Netting], st: Statement) -> Netting:
    """A statement's netting, also for one `net` left out (nothing deducted, nothing owed)."""
    return netting.get(st.statement_id) or Netting(st.statement_id, st.window_id, st.site_id, st.total_cents)


def _net_site(history: list[Due]) -> dict[uuid.UUID, Netting]:
    open_debts: deque[_Debt] = deque()
    debts: list[_Debt] = []
    out: dict[uuid.UUID, Netting] = {}
    for st in history:
        if st.total_cents < 0:
            debt = _Debt(st)
            open_debts.append(debt)
            debts.append(debt)
            continue
        room, deductions = st.total_cents, []
        while room > 0 and open_debts:
            debt = open_debts[0]
            take = min(room, debt.remaining)
            deductions.append(debt.settle(st, take))
            room -= take
            if debt.remaining == 0:
                open_debts.popleft()
        out[st.statement_id] = Netting(
            st.statement_id, st.window_id, st.site_id, st.total_cents, tuple(deductions)
        )
    for debt in debts:
        d = debt.due
        out[d.statement_id] = Netting(
            d.statement_id, d.window_id, d.site_id, d.total_cents, settled_by=tuple(debt.settlements)
        )
    return out


def net_parts(st: Due, netting: Mapping[uuid.UUID, Netting]) -> tuple[FunderPart, ...]:
    """A positive statement's funder parts less what its deductions settle: whose funds the net
    payout is. They sum to the net amount."""
    found = netting.get(st.statement_id)
    if found is None or not found.deductions:
        return st.parts  # the common case, kept cheap: coverage asks this of every statement
    amounts: dict[Key, int] = defaultdict(int)
    for p in st.parts:
        amounts[(p.programme_id, p.funder_id)] += p.amount_cents
    for d in found.deductions:
        for p in d.parts:
            amounts[(p.programme_id, p.funder_id)] -= p.amount_cents
    return tuple(FunderPart(k[0], k[1], a) for k, a in amounts.items())
