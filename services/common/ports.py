"""Clock and id generation are ports so that domain code and tests stay deterministic."""

from __future__ import annotations

import os
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


# The version-4 UUID's fixed bits (RFC 9562 section 5.4): version 0b0100, variant 0b10.
_VARIANT_AND_VERSION_CLEARED = ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)
_UUID, _UNKNOWN, _urandom, _from_bytes = uuid.UUID, uuid.SafeUUID.unknown, os.urandom, int.from_bytes
_new, _set = object.__new__, object.__setattr__


class RandomIds:
    """Random (version 4) UUIDs from os.urandom, as uuid.uuid4 draws them, built without
    uuid.UUID's Python __init__ (its argument checks were 3 of uuid4's 4 us here, and the
    redemption hot path takes two ids per request: issue 4). The instance is filled as the end of
    that __init__ fills it (and __setstate__ does): its two slots, `int` and `is_safe`. The names
    are bound once at import, since each lookup counted."""

    def new(self) -> uuid.UUID:
        made: uuid.UUID = _new(_UUID)
        _set(made, "int", (_from_bytes(_urandom(16)) & _VARIANT_AND_VERSION_CLEARED) | _VERSION_4)
        _set(made, "is_safe", _UNKNOWN)
        return made
