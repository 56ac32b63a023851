import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.redemption.domain.rules import (
    PassView,
    RedemptionView,
    Refusal,
    check_redeemable,
    check_reversible,
    period_over,
)

PASS = PassView(
    uuid.UUID(int=1), uuid.UUID(int=2), "active", date(2026, 1, 1), date(2026, 12, 31), 31, ("basic-skills",)
)
TODAY = date(2026, 6, 1)


def refusal(**kw) -> int:  # type: ignore[no-untyped-def]
    args = {"p": PASS, "qualified": True, "today": TODAY, "learning_path": "basic-skills", **kw}
    with pytest.raises(Refusal) as exc:
        check_redeemable(**args)
    return exc.value.status


def test_a_valid_pass_at_a_qualified_site_is_accepted() -> None:
    assert check_redeemable(PASS, qualified=True, today=TODAY, learning_path="basic-skills") == PASS


def test_each_refusal_has_its_status() -> None:
    assert refusal(p=None) == 404
    assert refusal(p=PassView(**{**PASS.__dict__, "status": "cancelled"})) == 410
    assert refusal(today=date(2025, 12, 31)) == 409
    assert refusal(today=date(2027, 2, 1)) == 410
    assert refusal(qualified=False) == 403
    assert refusal(learning_path="astrology") == 422


def test_the_grace_period_still_accepts() -> None:
    check_redeemable(PASS, qualified=True, today=date(2027, 1, 31), learning_path="basic-skills")


NOW = datetime(2026, 6, 1, tzinfo=UTC)
SITE = uuid.UUID(int=9)
R = RedemptionView(uuid.UUID(int=5), SITE, NOW - timedelta(hours=1), False)


def test_a_site_reverses_its_own_within_the_delay_and_finance_any_time() -> None:
    assert check_reversible(R, by_site=SITE, now=NOW, site_delay=timedelta(hours=72)) == R
    late = NOW + timedelta(days=30)
    with pytest.raises(Refusal) as exc:
        check_reversible(R, by_site=SITE, now=late, site_delay=timedelta(hours=72))
    assert exc.value.status == 403
    assert check_reversible(R, by_site=None, now=late, site_delay=timedelta(hours=72)) == R


def test_another_site_s_redemption_looks_missing_and_twice_is_refused() -> None:
    with pytest.raises(Refusal) as exc:
        check_reversible(R, by_site=uuid.UUID(int=10), now=NOW, site_delay=timedelta(hours=72))
    assert exc.value.status == 404
    with pytest.raises(Refusal) as exc:
        check_reversible(
            RedemptionView(R.redemption_id, SITE, R.accepted_at, True),
            by_site=None,
            now=NOW,
            site_delay=timedelta(hours=1),
        )
    assert exc.value.status == 409


PARIS = ZoneInfo("Europe/Paris")


def test_monthly_windows_follow_the_paris_calendar() -> None:
    # 31 Oct 23:30 UTC is already 1 November in Paris: the window opened in November.
    opened = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert not period_over(opened, datetime(2026, 11, 30, 22, 59, tzinfo=UTC), PARIS)
    assert period_over(opened, datetime(2026, 11, 30, 23, 0, tzinfo=UTC), PARIS)  # 1 Dec 00:00 Paris
    assert period_over(datetime(2026, 12, 15, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), PARIS)


def test_each_verdict_is_worded_by_refusal_as_check_redeemable_raises_it() -> None:
    from services.redemption.domain.rules import redeemable_verdict, refusal

    cases = [
        ({"p": None}, "unknown-pass", 404),
        ({"p": PassView(**{**PASS.__dict__, "status": "cancelled"})}, "pass-cancelled", 410),
        ({"today": date(2025, 12, 31)}, "pass-not-yet-valid", 409),
        ({"p": PassView(**{**PASS.__dict__, "status": "expired"})}, "pass-expired", 410),
        ({"today": date(2027, 2, 1)}, "pass-expired", 410),
        ({"qualified": False}, "site-not-qualified", 403),
        ({"learning_path": "astrology"}, "unknown-learning-path", 422),
    ]
    for kw, slug, status in cases:
        args = {"p": PASS, "qualified": True, "today": TODAY, "learning_path": "basic-skills", **kw}
        assert redeemable_verdict(**args) == slug  # type: ignore[arg-type]
        with pytest.raises(Refusal) as exc:
            check_redeemable(**args)  # type: ignore[arg-type]
        terms = (
            {}
            if args["p"] is None
            else {
                "valid_from": PASS.valid_from,
                "valid_until": PASS.valid_until,
                "learning_paths": PASS.learning_paths,
            }
        )
        worded = refusal(slug, **terms)  # type: ignore[arg-type]
        assert (exc.value.status, exc.value.slug, exc.value.title, exc.value.detail) == (
            status,
            slug,
            worded.title,
            worded.detail,
        )
    assert refusal("already-redeemed").status == 409
    assert redeemable_verdict(PASS, qualified=True, today=TODAY, learning_path="basic-skills") is None
    with pytest.raises(ValueError):
        refusal("no-such-refusal")
