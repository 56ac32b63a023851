"""Clock and id generation are ports so that domain code and tests stay deterministic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdGenerator(Protocol):
    def new(self) -> uuid.UUID: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds:
    def new(self) -> uuid.UUID:
        return uuid.uuid4()
