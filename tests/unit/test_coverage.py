"""Coverage: a statement the funders' payments do not cover is held, never paid."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.clearing.domain.coverage import StatementDue, assess
from services.clearing.domain.statements import FunderPart

P = uuid.UUID(int=100)
F1, F2 = uuid.UUID(int=1), uuid.UUID(int=2)


def due(n: int, window: int, total: int, f1: int, f2: int) -> StatementDue:
    return StatementDue(
        uuid.UUID(int=1000 + n),
        window,
        uuid.UUID(int=500 + n),
        total,
        (FunderPart(P, F1, f1), FunderPart(P, F2, f2)),
    )


def test_the_statement_that_would_overdraw_a_funder_is_held_and_the_rows_say_so() -> None:
    a, b, c = due(1, 1, 3000, 1800, 1200), due(2, 1, 3000, 1800, 1200), due(3, 2, -1000, -600, -400)
    cov = assess([c, b, a], paid_in={(P, F1): 3000, (P, F2): 2000}, ordered={(P, F1): 3000, (P, F2): 2000})
    assert cov.held == {b.statement_id}
    (r1, r2) = cov.rows
    assert (r1.paid_in_cents, r1.owed_cents, r1.paid_out_cents, r1.held_cents, r1.covered) == (
        3000,
        3000,
        1800,
        1800,
        False,
    )
    assert (r2.paid_in_cents, r2.owed_cents, r2.paid_out_cents, r2.held_cents) == (2000, 2000, 1200, 1200)


def test_a_later_payment_releases_a_held_statement() -> None:
    a, b = due(1, 1, 3000, 1800, 1200), due(2, 1, 3000, 1800, 1200)
    assert assess([a, b], paid_in={(P, F1): 3600, (P, F2): 2400}).held == frozenset()


amounts = st.integers(min_value=-5000, max_value=20_000)


@given(
    st.lists(st.tuples(st.integers(1, 3), amounts, st.integers(0, 10_000)), max_size=30),
    st.integers(0, 100_000),
    st.integers(0, 100_000),
)
def test_payouts_never_exceed_payments_and_everything_owed_is_counted(items, paid1, paid2) -> None:  # type: ignore[no-untyped-def]
    statements = [
        due(i, w, total, total * s // 10_000, total - total * s // 10_000)
        for i, (w, total, s) in enumerate(items)
    ]
    cov = assess(statements, paid_in={(P, F1): paid1, (P, F2): paid2})
    rows = {r.funder_id: r for r in cov.rows if r.programme_id == P}
    paid = {F1: paid1, F2: paid2}
    for f, r in rows.items():
        assert r.paid_out_cents <= paid[f]
        assert r.owed_cents == sum(p.amount_cents for s in statements for p in s.parts if p.funder_id == f)
    positive = [s for s in statements if s.total_cents > 0]
    paid_out_total = sum(r.paid_out_cents for r in rows.values())
    assert paid_out_total == sum(s.total_cents for s in positive if s.statement_id not in cov.held)
    assert all(s.total_cents > 0 for s in statements if s.statement_id in cov.held)
