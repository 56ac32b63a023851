import uuid

import pytest

from services.issuer.domain.model import (
    Due,
    Refused,
    Share,
    check_payment,
    check_shares,
    fully_funded,
    funder_dues,
)

R, S, E = (uuid.UUID(int=i) for i in (1, 2, 3))


def test_shares_must_sum_to_ten_thousand_with_one_to_six_distinct_funders() -> None:
    check_shares([Share(R, 5000), Share(S, 3000), Share(E, 2000)])
    for bad in (
        [Share(R, 5000), Share(S, 3000)],
        [],
        [Share(R, 5000), Share(R, 5000)],
        [Share(uuid.UUID(int=i), 10_000 // 7) for i in range(7)],
    ):
        with pytest.raises(Refused):
            check_shares(bad)


def test_order_dues_split_the_face_value_exactly() -> None:
    dues = funder_dues(9_000 * 5 * 1000, [Share(R, 5000), Share(S, 3000), Share(E, 2000)])
    assert dues == [(R, 22_500_000), (S, 13_500_000), (E, 9_000_000)]


DUES = [Due(R, 500, False), Due(S, 300, True), Due(E, 200, False)]


def test_a_funder_pays_its_exact_share_once() -> None:
    check_payment(DUES, R, 500)
    with pytest.raises(Refused) as exc:
        check_payment(DUES, R, 499)
    assert exc.value.status == 422
    with pytest.raises(Refused) as exc:
        check_payment(DUES, S, 300)
    assert exc.value.status == 409
    with pytest.raises(Refused) as exc:
        check_payment(DUES, uuid.UUID(int=77), 1)
    assert exc.value.status == 422


def test_activation_waits_for_the_last_share() -> None:
    assert not fully_funded(DUES, R)
    assert fully_funded([Due(R, 500, True), Due(S, 300, True), Due(E, 200, False)], E)
