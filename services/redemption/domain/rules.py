"""Whether a pass may be redeemed or a redemption reversed. Pure decisions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from uuid import UUID


class Refusal(Exception):
    """Refused, with the HTTP status and problem slug the API answers with."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail


@dataclass(frozen=True)
class PassView:
    pass_id: UUID
    programme_id: UUID
    status: str
    valid_from: date
    valid_until: date
    grace_days: int
    learning_paths: tuple[str, ...]


def redeemable_verdict(p: PassView | None, *, qualified: bool, today: date, learning_path: str) -> str | None:
    """None when the pass may be redeemed, else the refusal's slug. The checks go in this order;
    the database's redeem_passes (migration 003) makes the same decisions in the same order."""
    if p is None:
        return "unknown-pass"
    if p.status == "cancelled":
        return "pass-cancelled"
    if today < p.valid_from:
        return "pass-not-yet-valid"
    if p.status == "expired" or today > p.valid_until + timedelta(days=p.grace_days):
        return "pass-expired"
    if not qualified:
        return "site-not-qualified"
    if learning_path not in p.learning_paths:
        return "unknown-learning-path"
    return None


def refusal(
    slug: str,
    *,
    valid_from: date | None = None,
    valid_until: date | None = None,
    learning_paths: tuple[str, ...] = (),
) -> Refusal:
    """The refusal a slug stands for, worded with the pass's terms."""
    if slug == "unknown-pass":
        return Refusal(404, slug, "Unknown pass", "no pass has this code")
    if slug == "pass-cancelled":
        return Refusal(410, slug, "Pass cancelled", "this pass was cancelled (lost or stolen booklet)")
    if slug == "pass-not-yet-valid":
        return Refusal(409, slug, "Pass not yet valid", f"this pass is valid from {valid_from}")
    if slug == "pass-expired":
        return Refusal(410, slug, "Pass expired", f"this pass expired on {valid_until}")
    if slug == "site-not-qualified":
        return Refusal(
            403, slug, "Site not qualified", "your site is not qualified for this pass's programme"
        )
    if slug == "unknown-learning-path":
        offered = ", ".join(learning_paths)
        return Refusal(422, slug, "Learning path not offered", f"this programme offers: {offered}")
    if slug == ALREADY_REDEEMED.slug:
        return ALREADY_REDEEMED
    raise ValueError(f"no refusal is called {slug!r}")


def check_redeemable(p: PassView | None, *, qualified: bool, today: date, learning_path: str) -> PassView:
    slug = redeemable_verdict(p, qualified=qualified, today=today, learning_path=learning_path)
    if slug is not None:
        assert p is not None or slug == "unknown-pass"
        raise refusal(
            slug,
            valid_from=p.valid_from if p else None,
            valid_until=p.valid_until if p else None,
            learning_paths=p.learning_paths if p else (),
        )
    assert p is not None
    return p


ALREADY_REDEEMED = Refusal(
    409, "already-redeemed", "Pass already redeemed", "this pass has already been used"
)


@dataclass(frozen=True)
class RedemptionView:
    redemption_id: UUID
    site_id: UUID
    accepted_at: datetime
    reversed: bool


def check_reversible(
    r: RedemptionView | None, *, by_site: UUID | None, now: datetime, site_delay: timedelta
) -> RedemptionView:
    """A site reverses its own redemption within `site_delay`; finance (by_site None) any time."""
    if r is None or (by_site is not None and r.site_id != by_site):
        raise Refusal(404, "unknown-redemption", "Unknown redemption", "no such redemption for you")
    if r.reversed:
        raise Refusal(409, "already-reversed", "Already reversed", "this redemption was already reversed")
    if by_site is not None and now - r.accepted_at > site_delay:
        raise Refusal(
            403,
            "reversal-delay-passed",
            "Too late to reverse",
            "ask finance: the site's reversal delay has passed",
        )
    return r


def period_over(opened_at: datetime, now: datetime, tz: tzinfo) -> bool:
    """True when `now` is in a later calendar month than the window's opening, in `tz`
    (Europe/Paris): monthly windows follow the French calendar, not UTC."""
    opened, today = opened_at.astimezone(tz), now.astimezone(tz)
    return (today.year, today.month) > (opened.year, opened.month)
