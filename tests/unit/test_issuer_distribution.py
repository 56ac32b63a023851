"""Distribution rules: eligibility by age, keyed pseudonyms, what can be distributed."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.issuer.domain.distribution import (
    age_on,
    check_distributable,
    check_eligible,
    last_valid_day,
    pseudonym,
)
from services.issuer.domain.model import Refused

KEY = b"k" * 32


def test_age_counts_whole_years_and_leap_day_birthdays() -> None:
    assert age_on(date(2000, 6, 15), date(2026, 6, 14)) == 25
    assert age_on(date(2000, 6, 15), date(2026, 6, 15)) == 26
    assert age_on(date(2008, 2, 29), date(2024, 2, 28)) == 15
    assert age_on(date(2008, 2, 29), date(2024, 2, 29)) == 16
    assert age_on(date(2008, 2, 29), date(2025, 3, 1)) == 17


def test_the_age_range_is_inclusive_at_both_ends() -> None:
    day = date(2026, 3, 1)
    check_eligible(16, 25, date(2010, 3, 1), day)  # 16 today
    check_eligible(16, 25, date(2000, 3, 2), day)  # 25, turns 26 tomorrow
    for birth in (date(2010, 3, 2), date(2000, 3, 1), date(1950, 1, 1)):
        with pytest.raises(Refused) as exc:
            check_eligible(16, 25, birth, day)
        assert (exc.value.status, exc.value.slug) == (422, "not-eligible")
    check_eligible(None, None, date(1950, 1, 1), day)  # no range: everyone


def test_a_birth_date_after_the_distribution_is_refused() -> None:
    with pytest.raises(Refused) as exc:
        check_eligible(None, None, date(2026, 3, 2), date(2026, 3, 1))
    assert exc.value.status == 422


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30), st.dates())
def test_a_pseudonym_reveals_nothing_of_the_identity(given: str, family: str, birth: date) -> None:
    alias = pseudonym(KEY, given, family, birth)
    assert len(alias) == 64 and set(alias) <= set("0123456789abcdef")
    assert alias != pseudonym(b"another key", given, family, birth)


def test_the_same_person_gets_the_same_pseudonym_however_typed() -> None:
    birth = date(2005, 4, 1)
    assert pseudonym(KEY, "Élodie", "DUPONT", birth) == pseudonym(KEY, " elodie ", "Dupont", birth)
    assert pseudonym(KEY, "Élodie", "Dupont", birth) != pseudonym(KEY, "Élodie", "Dupont", date(2005, 4, 2))
    assert pseudonym(KEY, "Élodie", "Dupont", birth) != pseudonym(KEY, "Élodie Dupont", "", birth)


def test_cancelled_distributed_or_expired_booklets_cannot_be_distributed() -> None:
    until = date(2026, 12, 31)
    check_distributable("active", False, until, 31, date(2027, 1, 31))
    for status, done, day, slug in (
        ("cancelled", False, date(2026, 5, 1), "booklet-cancelled"),
        ("active", True, date(2026, 5, 1), "already-distributed"),
        ("active", False, date(2027, 2, 1), "programme-expired"),
    ):
        with pytest.raises(Refused) as exc:
            check_distributable(status, done, until, 31, day)
        assert exc.value.slug == slug
    assert last_valid_day(until, 31) == date(2027, 1, 31)


def test_bulk_codes_are_distinct_valid_and_use_the_whole_alphabet_evenly() -> None:
    from collections import Counter

    from schemas.pass_codes import ALPHABET, normalize
    from services.issuer.codes import new_codes

    made = new_codes(20_000)
    assert len(made) == len(set(made)) == 20_000
    assert all(normalize(c) == c for c in made)
    counts = Counter("".join(c[:-1] for c in made))
    assert set(counts) == set(ALPHABET)
    expected = 200_000 / len(ALPHABET)
    assert all(abs(n - expected) < 0.06 * expected for n in counts.values())  # ~14 sigma: bias, not chance
