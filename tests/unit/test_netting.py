"""Netting: a site's negative statement is recovered, once, from its next positive statements."""

from __future__ import annotations

import uuid
from collections import defaultdict
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from services.clearing.domain.coverage import StatementDue, assess
from services.clearing.domain.netting import net, net_parts, netting_of
from services.clearing.domain.payouts import CARRIED_OVER, HELD, NETTED, plan_payouts
from services.clearing.domain.statements import FunderPart
from services.common.money import split_by_weights

P, Q = uuid.UUID(int=100), uuid.UUID(int=101)
F1, F2 = uuid.UUID(int=1), uuid.UUID(int=2)
SITE, OTHER = uuid.UUID(int=500), uuid.UUID(int=501)


def due(window: int, total: int, site: uuid.UUID = SITE, programme: uuid.UUID = P) -> StatementDue:
    f1 = total * 6000 // 10_000
    return StatementDue(
        uuid.uuid5(uuid.NAMESPACE_OID, f"{window}:{site}"),
        window,
        site,
        total,
        (FunderPart(programme, F1, f1), FunderPart(programme, F2, total - f1)),
    )


def test_a_negative_statement_is_deducted_from_the_next_positive_ones_oldest_first() -> None:
    w1, w2, w3, w4 = due(1, -1000), due(2, -500), due(3, 1200), due(4, 5000)
    netting = net([w4, w2, w3, w1])  # in any order: window order per site decides
    assert [(d.settles, d.amount_cents) for d in netting[w3.statement_id].deductions] == [
        (w1.statement_id, 1000),
        (w2.statement_id, 200),
    ]
    assert netting[w3.statement_id].net_cents == 0
    assert [(d.settles, d.amount_cents) for d in netting[w4.statement_id].deductions] == [
        (w2.statement_id, 300)
    ]
    assert netting[w4.statement_id].net_cents == 4700
    assert netting[w1.statement_id].outstanding_cents == 0
    assert [(d.by, d.amount_cents) for d in netting[w2.statement_id].settled_by] == [
        (w3.statement_id, 200),
        (w4.statement_id, 300),
    ]
    # Window 3 is wholly taken: nothing is transferred, and the plan says what it settled.
    plan3 = plan_payouts(3, [w3], netting=netting)
    assert plan3.transfers == ()
    assert [(n.reason, [d.settles for d in n.deductions]) for n in plan3.not_paid] == [
        (NETTED, [w1.statement_id, w2.statement_id])
    ]
    (t,) = plan_payouts(4, [w4], netting=netting).transfers
    assert (t.gross_cents, t.amount_cents, t.deducted_cents) == (5000, 4700, 300)
    assert t.remittance.endswith("deduit 3,00 EUR solde negatif anterieur") and len(t.remittance) <= 140
    carried = plan_payouts(2, [w2], netting=netting).not_paid[0]
    assert (carried.reason, carried.outstanding_cents) == (CARRIED_OVER, 500)


def test_another_sites_debt_is_not_deducted_and_an_earlier_window_is_not_touched() -> None:
    before, neg, other = due(1, 800), due(2, -300), due(3, 900, site=OTHER)
    netting = net([before, neg, other])
    assert netting_of(netting, before).deductions == ()
    assert netting_of(netting, other).deductions == ()
    assert other.statement_id not in netting  # a site never negative is not even looked at
    assert netting[neg.statement_id].outstanding_cents == 300


def test_a_held_statement_keeps_its_deduction_and_coverage_counts_the_net() -> None:
    neg, pos = due(1, -1000), due(2, 3000)
    cov = assess([neg, pos], paid_in={(P, F1): 1000, (P, F2): 800})  # the net needs 1200 / 800
    assert cov.held == {pos.statement_id}
    plan = plan_payouts(2, [pos], held=cov.held, netting=cov.netting)
    assert [(n.reason, n.deductions[0].amount_cents) for n in plan.not_paid] == [(HELD, 1000)]
    rows = {r.funder_id: r for r in cov.rows}
    assert (rows[F1].owed_cents, rows[F1].paid_out_cents, rows[F1].held_cents) == (1200, 0, 1200)
    # Paid in full: the net is paid out, 2000 = 3000 − 1000, split as the parts say.
    cov = assess([neg, pos], paid_in={(P, F1): 1200, (P, F2): 800})
    rows = {r.funder_id: r for r in cov.rows}
    assert cov.held == frozenset()
    assert (rows[F1].paid_out_cents, rows[F2].paid_out_cents) == (1200, 800)
    assert (t := plan_payouts(2, [pos], netting=cov.netting).transfers[0]).amount_cents == 2000
    assert t.end_to_end_id == pos.statement_id.hex


def test_a_debt_of_one_programme_settled_from_another_moves_each_funders_part() -> None:
    neg, pos = due(1, -1000, programme=Q), due(2, 3000, programme=P)
    netting = net([neg, pos])
    parts = {(p.programme_id, p.funder_id): p.amount_cents for p in net_parts(pos, netting)}
    # The site is paid for P, less what it owes back to Q's funders.
    assert parts == {(P, F1): 1800, (P, F2): 1200, (Q, F1): -600, (Q, F2): -400}
    assert sum(parts.values()) == netting[pos.statement_id].net_cents == 2000


def test_split_by_weights_is_exact_and_gives_the_weights_back_for_their_sum() -> None:
    assert split_by_weights(10, [1, 1, 1]) == [4, 3, 3]
    assert split_by_weights(700, [600, 400, -300]) == [600, 400, -300]
    assert sum(split_by_weights(333, [600, 400, -300])) == 333


@given(
    st.lists(
        st.tuples(st.sampled_from([SITE, OTHER]), st.integers(-3000, 3000), st.sampled_from([P, Q])),
        max_size=25,
    )
)
def test_every_cent_of_debt_is_deducted_once_and_the_net_is_exact(items) -> None:  # type: ignore[no-untyped-def]
    windows: dict[uuid.UUID, int] = defaultdict(int)
    statements = []
    for site, total, programme in items:
        windows[site] += 1
        statements.append(due(windows[site], total, site, programme))
    netting = net(statements)
    for site in (SITE, OTHER):
        mine = [s for s in statements if s.site_id == site]
        paid = sum(netting_of(netting, s).net_cents for s in mine)
        outstanding = sum(netting_of(netting, s).outstanding_cents for s in mine)
        # What the site is paid in all, plus what it still owes, is what its statements say.
        assert paid - outstanding == sum(s.total_cents for s in mine)
        assert all(netting_of(netting, s).net_cents >= 0 for s in mine)
        # Debts are settled oldest first: an open debt has no later-settled older sibling open.
        open_windows = [s.window_id for s in mine if netting_of(netting, s).outstanding_cents > 0]
        partly = [
            s.window_id
            for s in mine
            if netting_of(netting, s).settled_by and netting_of(netting, s).outstanding_cents == 0
        ]
        assert all(p < o for p in partly for o in open_windows)
    for s in statements:
        n = netting_of(netting, s)
        if s.total_cents > 0:
            assert sum(p.amount_cents for p in net_parts(s, netting)) == n.net_cents
        for d in n.settled_by:
            assert sum(p.amount_cents for p in d.parts) == d.amount_cents
        if s.total_cents < 0 and n.outstanding_cents == 0:
            # A debt settled in full gives back exactly its own funder parts.
            back: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
            for d in n.settled_by:
                for p in d.parts:
                    back[(p.programme_id, p.funder_id)] += p.amount_cents
            assert back == {(p.programme_id, p.funder_id): -p.amount_cents for p in s.parts}
        for d in n.settled_by:
            for p, whole in zip(d.parts, s.parts, strict=True):
                # Each settled part is within a cent of the debt's proportion, per settlement.
                assert (
                    abs(
                        Fraction(p.amount_cents)
                        - Fraction(d.amount_cents * whole.amount_cents, s.total_cents)
                    )
                    < 2
                )
