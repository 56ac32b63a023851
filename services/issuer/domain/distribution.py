"""Distribution to beneficiaries, cancellation and expiry. Pure decisions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from datetime import date, timedelta

from services.issuer.domain.model import Refused


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day` (a person born on 29 February turns a year older on 1 March)."""
    had_birthday = (day.month, day.day) >= (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (0 if had_birthday else 1)


def check_eligible(min_age: int | None, max_age: int | None, birth_date: date, day: date) -> None:
    """The programme's age range is inclusive: 16–25 admits a 16-year-old and a 25-year-old."""
    if birth_date > day:
        raise Refused(422, "invalid-birth-date", "the birth date is after the distribution date")
    age = age_on(birth_date, day)
    if min_age is not None and age < min_age:
        raise Refused(422, "not-eligible", f"the beneficiary is {age}; this programme starts at {min_age}")
    if max_age is not None and age > max_age:
        raise Refused(422, "not-eligible", f"the beneficiary is {age}; this programme ends at {max_age}")


def _fold(text: str) -> str:
    # "Élodie  DUPONT" and "elodie dupont" are the same person for the pseudonym.
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


def pseudonym(key: bytes, given_name: str, family_name: str, birth_date: date) -> str:
    """A keyed pseudonym of a person: the same person gets the same pseudonym (so a second
    booklet to one person can be seen), and without the key it cannot be linked back."""
    identity = "\x1f".join((_fold(given_name), _fold(family_name), birth_date.isoformat()))
    return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()


def last_valid_day(valid_until: date, grace_days: int) -> date:
    return valid_until + timedelta(days=grace_days)


def check_distributable(
    status: str, already_distributed: bool, valid_until: date, grace_days: int, day: date
) -> None:
    if status == "cancelled":
        raise Refused(409, "booklet-cancelled", "this booklet was cancelled (lost or stolen)")
    if already_distributed:
        raise Refused(409, "already-distributed", "this booklet was already handed to a beneficiary")
    if day > last_valid_day(valid_until, grace_days):
        raise Refused(422, "programme-expired", f"this programme's passes expired after {valid_until}")
