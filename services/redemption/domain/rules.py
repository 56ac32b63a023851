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


def check_redeemable(p: PassView | None, *, qualified: bool, today: date, learning_path: str) -> PassView:
    if p is None:
        raise Refusal(404, "unknown-pass", "Unknown pass", "no pass has this code")
    if p.status == "cancelled":
        raise Refusal(
            410, "pass-cancelled", "Pass cancelled", "this pass was cancelled (lost or stolen booklet)"
        )
    if today < p.valid_from:
        raise Refusal(
            409, "pass-not-yet-valid", "Pass not yet valid", f"this pass is valid from {p.valid_from}"
        )
    if p.status == "expired" or today > p.valid_until + timedelta(days=p.grace_days):
        raise Refusal(410, "pass-expired", "Pass expired", f"this pass expired on {p.valid_until}")
    if not qualified:
        raise Refusal(
            403,
            "site-not-qualified",
            "Site not qualified",
            "your site is not qualified for this pass's programme",
        )
    if learning_path not in p.learning_paths:
        offered = ", ".join(p.learning_paths)
        raise Refusal(
            422, "unknown-learning-path", "Learning path not offered", f"this programme offers: {offered}"
        )
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
