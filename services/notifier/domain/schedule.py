"""Retry schedule and notification ids. Pure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

NOTIFICATION_NS = uuid.UUID("c6f0e2a4-1b7d-4e5f-8a9b-0c1d2e3f4a5b")


def notification_id(statement_id: uuid.UUID, endpoint_id: uuid.UUID) -> str:
    """Stable across retries and restarts: the Standard Webhooks webhook-id."""
    return f"msg_{uuid.uuid5(NOTIFICATION_NS, f'{statement_id}:{endpoint_id}').hex}"


def next_attempt(attempts_made: int, now: datetime, schedule: tuple[float, ...]) -> datetime | None:
    """When to try again after `attempts_made` failed attempts; None once the schedule is spent."""
    if attempts_made > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts_made - 1])


def site_contact_channel(site_id: uuid.UUID) -> uuid.UUID:
    """The channel id of a site's registry contact e-mail, used when it registered no channel."""
    return uuid.uuid5(NOTIFICATION_NS, f"site-contact:{site_id}")


def funder_contact_channel(funder_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NOTIFICATION_NS, f"funder-contact:{funder_id}")


def signing_secrets(
    now: datetime, current: str, previous: str | None, previous_until: datetime | None
) -> tuple[str, ...]:
    """The secrets that sign a delivery: the current one, and the previous one while its
    overlap lasts (receivers may verify with either until they switch)."""
    if previous and previous_until and now < previous_until:
        return (current, previous)
    return (current,)


def endpoint_disable_reason(consecutive_failures: int, threshold: int, last_error: str) -> str | None:
    """An endpoint whose last `threshold` notifications all failed is disabled, with why."""
    if threshold <= 0 or consecutive_failures < threshold:
        return None
    return f"{consecutive_failures} notifications in a row failed after every retry; last error: {last_error}"
