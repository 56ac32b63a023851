"""Retry schedule and notification ids. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
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
    now: datetime, current: str, retired: Iterable[tuple[str, datetime]] = ()
) -> tuple[str, ...]:
    """The secrets that sign a delivery: the current one, then every retired one whose overlap
    has not ended, newest first. Two rotations within an overlap keep both older secrets
    (Standard Webhooks allows several space-separated signatures; a receiver verifies with
    whichever it holds)."""
    alive = sorted((r for r in retired if now < r[1] and r[0] != current), key=lambda r: r[1], reverse=True)
    return (current, *dict.fromkeys(secret for secret, _ in alive))


def is_last_attempt(attempts_made: int, schedule: tuple[float, ...]) -> bool:
    """True when the attempt about to be made (after `attempts_made`) is the schedule's last."""
    return attempts_made + 1 > len(schedule)


def reversal_after_close(redemption_window: int, reversal_window: int) -> bool:
    """A reversal is stamped with the window open when it is made, and closing a window opens
    the next in one transaction: a later window than the redemption's means the redemption's
    window was closed, its amount in an issued statement, and the deduction lands in the
    reversal's window (clearing's negative line). Same window: it nets out, nothing to tell."""
    return reversal_window > redemption_window


def endpoint_disable_reason(consecutive_failures: int, threshold: int, last_error: str) -> str | None:
    """An endpoint whose last `threshold` notifications all failed is disabled, with why."""
    if threshold <= 0 or consecutive_failures < threshold:
        return None
    return f"{consecutive_failures} notifications in a row failed after every retry; last error: {last_error}"
