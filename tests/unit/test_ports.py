"""RandomIds builds its UUIDs without uuid.UUID's __init__: they must be what uuid4 would give."""

from __future__ import annotations

import pickle
import uuid

from services.common.ports import RandomIds


def test_random_ids_are_version_4_uuids_equal_to_their_parsed_text() -> None:
    ids = RandomIds()
    for _ in range(2000):
        made = ids.new()
        assert type(made) is uuid.UUID
        assert made.version == 4 and made.variant == uuid.RFC_4122
        parsed = uuid.UUID(str(made))
        assert parsed == made and hash(parsed) == hash(made) and parsed.bytes == made.bytes
        assert made.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(made)) == made


def test_random_ids_do_not_repeat_and_use_every_random_bit() -> None:
    ids = RandomIds()
    drawn = [ids.new().int for _ in range(20_000)]
    assert len(set(drawn)) == len(drawn)
    fixed = (0xF000 << 64) | (0xC000 << 48)
    ones = 0
    for value in drawn:
        ones |= value
    # Every one of the 122 random bits was set at least once across 20,000 draws.
    assert ones & ~fixed == ((1 << 128) - 1) & ~fixed
