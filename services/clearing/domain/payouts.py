"""What a window's statements mean for the payout file, and a statement's lines as a table.

Pure: the SEPA, CSV and PDF adapters render what is decided here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from schemas.events import FunderStatementIssued, StatementIssued
from services.clearing.domain.netting import Deduction, Netting
from services.clearing.domain.netting import Statement as NettingStatement

CARRIED_OVER = "carried-over"  # a statement at zero or below: nothing is paid, it nets against the next
HELD = "held"  # a statement whose payout is not covered by the funders' payments: never paid silently
NETTED = "netted"  # a positive statement wholly taken by earlier negative ones of its site: nothing to pay

CSV_HEADER = (
    "statement_id",
    "window_id",
    "site_id",
    "kind",
    "ref_id",
    "pass_id",
    "programme_id",
    "amount_cents",
)


@dataclass(frozen=True)
class Transfer:
    """One credit transfer to one site, for one statement: its total less the deductions."""

    statement_id: uuid.UUID
    site_id: uuid.UUID
    amount_cents: int  # what is transferred: the net
    deductions: tuple[Deduction, ...] = ()

    @property
    def gross_cents(self) -> int:
        return self.amount_cents + self.deducted_cents

    @property
    def deducted_cents(self) -> int:
        return sum(d.amount_cents for d in self.deductions)

    @property
    def end_to_end_id(self) -> str:
        # pain.001 allows 35 characters: the statement id without dashes (32) fits.
        return self.statement_id.hex

    @property
    def remittance(self) -> str:
        # At most 140 characters of the SEPA Latin set (no euro sign, no accents).
        text = f"Pass Numerique releve {self.statement_id}"
        if self.deductions:
            euros, cents = divmod(self.deducted_cents, 100)
            text += f" - deduit {euros},{cents:02d} EUR solde negatif anterieur"
        return text


@dataclass(frozen=True)
class NotPaid:
    statement_id: uuid.UUID
    site_id: uuid.UUID
    total_cents: int
    reason: str
    deductions: tuple[Deduction, ...] = ()  # netted (or held): what it settles
    outstanding_cents: int = 0  # carried over: what is still to recover, as of this window


@dataclass(frozen=True)
class PayoutPlan:
    window_id: int
    transfers: tuple[Transfer, ...]
    not_paid: tuple[NotPaid, ...] = field(default=())

    @property
    def total_cents(self) -> int:
        return sum(t.amount_cents for t in self.transfers)


# A statement as far as its payout needs it: what netting needs too.
StatementTotal = NettingStatement


def plan_payouts(
    window_id: int,
    statements: Iterable[StatementTotal],
    *,
    held: Collection[uuid.UUID] = (),
    netting: Mapping[uuid.UUID, Netting] | None = None,
) -> PayoutPlan:
    """One transfer per site statement with a positive net, unless held for lack of coverage.

    A statement at zero or below (reversals of an earlier window's redemptions) is not paid: it
    carries over, and the site's next positive statements settle it (`netting`, from the whole
    statement history: domain.netting). Ordered by site id so the same statements give the same
    file."""
    netting = netting or {}
    transfers: list[Transfer] = []
    not_paid: list[NotPaid] = []
    for st in sorted(statements, key=lambda s: str(s.site_id)):
        if st.window_id != window_id:
            raise ValueError(f"statement {st.statement_id} is of window {st.window_id}, not {window_id}")
        found = netting.get(st.statement_id)
        deductions = found.deductions if found else ()
        net = st.total_cents - sum(d.amount_cents for d in deductions)
        if st.total_cents <= 0:
            owed = -st.total_cents
            not_paid.append(NotPaid(st.statement_id, st.site_id, st.total_cents, CARRIED_OVER, (), owed))
        elif st.statement_id in held:
            not_paid.append(NotPaid(st.statement_id, st.site_id, st.total_cents, HELD, deductions))
        elif net == 0:
            not_paid.append(NotPaid(st.statement_id, st.site_id, st.total_cents, NETTED, deductions))
        else:
            transfers.append(Transfer(st.statement_id, st.site_id, net, deductions))
    return PayoutPlan(window_id, tuple(transfers), tuple(not_paid))


def csv_rows(st: StatementIssued) -> list[tuple[str, ...]]:
    """A statement's lines, in the order its digest covers them, amounts in integer cents."""
    return [
        (
            str(st.statement_id),
            str(st.window_id),
            str(st.site_id),
            line.kind,
            str(line.ref_id),
            str(line.pass_id),
            str(line.programme_id),
            str(line.amount_cents),
        )
        for line in st.lines
    ]


@dataclass(frozen=True)
class ProgrammeTotal:
    programme_id: uuid.UUID
    redemptions: int
    reversals: int
    total_cents: int


def programme_totals(st: StatementIssued) -> list[ProgrammeTotal]:
    counts: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in st.lines:
        entry = counts[line.programme_id]
        entry[0 if line.kind == "redemption" else 1] += 1
        entry[2] += line.amount_cents
    return [ProgrammeTotal(p, *counts[p]) for p in sorted(counts, key=str)]


@dataclass(frozen=True)
class Names:
    """Who the ids on a document are: organisations (sites, funders, programmes), as the issuer's
    events name them. An id not (yet) known is shown as the id itself."""

    sites: Mapping[uuid.UUID, tuple[str, str]] = field(default_factory=dict)  # site id -> (name, SIRET)
    funders: Mapping[uuid.UUID, str] = field(default_factory=dict)
    programmes: Mapping[uuid.UUID, str] = field(default_factory=dict)

    def site(self, site_id: uuid.UUID) -> str:
        known = self.sites.get(site_id)
        return known[0] if known else str(site_id)

    def siret(self, site_id: uuid.UUID) -> str | None:
        known = self.sites.get(site_id)
        return known[1] if known else None

    def funder(self, funder_id: uuid.UUID) -> str:
        return self.funders.get(funder_id, str(funder_id))

    def programme(self, programme_id: uuid.UUID) -> str:
        return self.programmes.get(programme_id, str(programme_id))


FUNDER_CSV_HEADER = (
    "funder_statement_id",
    "window_id",
    "funder_id",
    "statement_id",
    "site_id",
    "amount_cents",
)


@dataclass(frozen=True)
class FunderLine:
    """A funder's share of one site statement: one row of its call for funds."""

    statement_id: uuid.UUID
    site_id: uuid.UUID
    amount_cents: int


def funder_lines(lines: Iterable[FunderLine]) -> list[FunderLine]:
    """In the order the call for funds' digest covers them (statement id as text)."""
    return sorted(lines, key=lambda line: str(line.statement_id))


def funder_csv_rows(fs: FunderStatementIssued, lines: Iterable[FunderLine]) -> list[tuple[str, ...]]:
    return [
        (
            str(fs.funder_statement_id),
            str(fs.window_id),
            str(fs.funder_id),
            str(line.statement_id),
            str(line.site_id),
            str(line.amount_cents),
        )
        for line in funder_lines(lines)
    ]
