"""Invariant 2: shares are exact. Largest remainder, ties by funder order, within one cent."""

import itertools
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.money import format_eur, split_by_shares


@st.composite
def shares(draw: st.DrawFn) -> list[int]:
    n = draw(st.integers(min_value=1, max_value=6))
    cuts = sorted(draw(st.lists(st.integers(0, 10_000), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 10_000]
    return [b - a for a, b in itertools.pairwise(bounds)]


@given(total=st.integers(-(10**9), 10**9), bps=shares())
def test_parts_sum_to_the_total_and_each_is_within_one_cent(total: int, bps: list[int]) -> None:
    parts = split_by_shares(total, bps)
    assert sum(parts) == total
    for part, bp in zip(parts, bps, strict=True):
        assert abs(Fraction(part) - Fraction(total * bp, 10_000)) < 1


@given(total=st.integers(0, 10**9), bps=shares())
def test_a_credit_splits_as_the_mirror_of_its_debit(total: int, bps: list[int]) -> None:
    assert split_by_shares(-total, bps) == [-p for p in split_by_shares(total, bps)]


def test_the_common_case_region_state_enedis() -> None:
    assert split_by_shares(1000, [5000, 3000, 2000]) == [500, 300, 200]


def test_ties_go_to_the_earlier_funder_in_programme_order() -> None:
    # 1 cent over three equal thirds: each exact share is 0.333…, the first funder takes it.
    assert split_by_shares(1, [3334, 3333, 3333]) == [1, 0, 0]
    assert split_by_shares(2, [2500, 2500, 2500, 2500]) == [1, 1, 0, 0]


def test_the_largest_remainder_wins_before_order() -> None:
    # 7 cents at 10 % / 90 %: exact 0.7 and 6.3 → the first (remainder .7) takes the extra cent.
    assert split_by_shares(7, [1000, 9000]) == [1, 6]


@pytest.mark.parametrize("bps", [[5000, 4000], [5000, 6000], [-1000, 11000]])
def test_shares_not_summing_to_ten_thousand_are_refused(bps: list[int]) -> None:
    with pytest.raises(ValueError):
        split_by_shares(100, bps)


def test_display_uses_the_french_format() -> None:
    assert format_eur(123456) == "1\u202f234,56 €"
    assert format_eur(-5) == "-0,05 €"


@pytest.mark.parametrize(
    ("cents", "shown"),
    [(0, "0,00 €"), (5, "0,05 €"), (1000, "10,00 €"), (123456, "1\u202f234,56 €"), (-250, "-2,50 €")],
)
def test_amounts_are_shown_the_french_way(cents: int, shown: str) -> None:
    assert format_eur(cents) == shown
