"""The clearing core: from a window's ledger lines to statements and calls for funds."""

import uuid
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import FunderShare
from services.clearing.domain import statements as core
from tests.unit.factories import ENEDIS, REGION, STATE, closed, redeemed, reversed_

SITE_A, SITE_B = uuid.UUID(int=501), uuid.UUID(int=502)


def lines(*events):  # type: ignore[no-untyped-def]
    return [core.ledger_line(e) for e in events]


def test_a_statement_adds_redemptions_and_subtracts_reversals() -> None:
    r1, r2, r3 = redeemed(1, SITE_A), redeemed(2, SITE_A), redeemed(3, SITE_A)
    st = core.statement(SITE_A, closed(1, 0), lines(r1, r2, r3, reversed_(r2, 1, window=1)))
    assert (st.redemptions, st.reversals, st.total_cents) == (3, 1, 2000)
    assert [(f.funder_id, f.amount_cents) for f in st.funder_amounts] == [
        (REGION, 1000),
        (STATE, 600),
        (ENEDIS, 400),
    ]
    assert st.expected_payout_date == date(2026, 12, 31)


def test_statements_are_deterministic_whatever_the_arrival_order() -> None:
    events = [redeemed(i, SITE_A) for i in range(5)]
    one = core.statement(SITE_A, closed(1, 0), lines(*events))
    two = core.statement(SITE_A, closed(1, 0), lines(*reversed(events)))
    assert one.model_dump_json() == two.model_dump_json()
    assert one.statement_id == core.statement_id(1, SITE_A)


def test_the_digest_covers_the_lines() -> None:
    st = core.statement(SITE_A, closed(1, 0), lines(redeemed(1, SITE_A), redeemed(2, SITE_A)))
    other = core.statement(SITE_A, closed(1, 0), lines(redeemed(1, SITE_A), redeemed(3, SITE_A)))
    assert st.digest != other.digest
    assert st.digest == core.digest(line.model_dump(mode="json") for line in st.lines)


def test_only_the_window_s_lines_make_its_statements() -> None:
    evs = lines(redeemed(1, SITE_A, window=1), redeemed(2, SITE_B, window=1), redeemed(3, SITE_A, window=2))
    sts = core.statements_for_partition(closed(1, 0), evs)
    assert {(s.site_id, s.total_cents) for s in sts} == {(SITE_A, 1000), (SITE_B, 1000)}


def test_the_split_is_per_programme_with_each_programme_s_shares() -> None:
    other_programme = redeemed(2, SITE_A, shares=(FunderShare(funder_id=STATE, share_bp=10_000),))
    other_programme = other_programme.model_copy(update={"programme_id": uuid.UUID(int=101)})
    st = core.statement(SITE_A, closed(1, 0), lines(redeemed(1, SITE_A), other_programme))
    amounts = {f.funder_id: f.amount_cents for f in st.funder_amounts}
    assert amounts == {REGION: 500, STATE: 300 + 1000, ENEDIS: 200}


@given(st.lists(st.integers(1, 50_000), min_size=1, max_size=30), st.integers(0, 5))
def test_funder_amounts_sum_to_the_statement_total(cents: list[int], reversals: int) -> None:
    evs = [redeemed(i, SITE_A, cents=c) for i, c in enumerate(cents)]
    revs = [reversed_(e, i, window=1) for i, e in enumerate(evs[:reversals])]
    st = core.statement(SITE_A, closed(1, 0), lines(*evs, *revs))
    assert sum(f.amount_cents for f in st.funder_amounts) == st.total_cents


def test_funder_statements_are_each_funder_s_share_of_every_statement() -> None:
    a = core.statement(SITE_A, closed(1, 0), lines(redeemed(1, SITE_A, cents=1001)))
    b = core.statement(SITE_B, closed(1, 1), lines(redeemed(2, SITE_B, cents=999)))
    calls = {f.funder_id: f for f in core.funder_statements(1, [a, b])}
    assert sum(f.amount_cents for f in calls.values()) == a.total_cents + b.total_cents
    assert calls[REGION].amount_cents == 501 + 499 and calls[REGION].statements == 2
