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
