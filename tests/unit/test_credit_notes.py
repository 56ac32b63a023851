"""Expiry credit notes: unused passes back to the funders, split exactly."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import FunderShare
from services.clearing.domain.credit_notes import credit_notes, last_redemption_day
from tests.unit.factories import ENEDIS, REGION, SHARES, STATE

PROGRAMME = uuid.UUID(int=77)


def test_unused_passes_are_credited_by_share_and_the_note_is_the_same_however_computed() -> None:
    issued = [uuid.UUID(int=i) for i in range(1, 11)]
    used = {issued[0], issued[3]}
    note = credit_notes(
        PROGRAMME,
        face_value_cents=1000,
        funders=SHARES,
        expired_after=date(2027, 1, 31),
        issued=issued,
        used=used,
    ).expiry
    again = credit_notes(
        PROGRAMME,
        face_value_cents=1000,
        funders=SHARES,
        expired_after=date(2027, 1, 31),
        issued=reversed(issued + issued),
        used=used,
    ).expiry
    assert (note.passes, note.total_cents) == (8, 8000)
    assert [(f.funder_id, f.amount_cents) for f in note.funder_amounts] == [
        (REGION, 4000),
        (STATE, 2400),
        (ENEDIS, 1600),
    ]
    assert note == again
    assert last_redemption_day(date(2026, 12, 31), 31) == date(2027, 1, 31)


@given(
    st.integers(0, 500),
    st.integers(1, 5000),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=4).filter(lambda xs: sum(xs) <= 10_000),
)
def test_the_credit_splits_to_the_cent_within_a_cent_of_each_share(
    unused: int, face: int, shares: list[int]
) -> None:
    bps = [*shares[:-1], 10_000 - sum(shares[:-1])]
    funders = tuple(FunderShare(funder_id=uuid.UUID(int=i + 1), share_bp=bp) for i, bp in enumerate(bps))
    issued = [uuid.UUID(int=1000 + i) for i in range(unused)]
    note = credit_notes(
        PROGRAMME,
        face_value_cents=face,
        funders=funders,
        expired_after=date(2027, 1, 1),
        issued=issued,
        used=set(),
    ).expiry
    assert sum(f.amount_cents for f in note.funder_amounts) == note.total_cents == unused * face
    for f, bp in zip(note.funder_amounts, bps, strict=True):
        assert abs(f.amount_cents * 10_000 - note.total_cents * bp) < 10_000


def test_a_cancelled_unused_pass_is_credited_by_the_cancellation_note_never_by_both() -> None:
    issued = [uuid.UUID(int=i) for i in range(1, 11)]
    used = {issued[0], issued[1]}
    cancelled = {issued[1], issued[2], issued[3], uuid.UUID(int=99)}  # 2: used; 99: not of this programme
    notes = credit_notes(
        PROGRAMME,
        face_value_cents=1000,
        funders=SHARES,
        expired_after=date(2027, 1, 31),
        issued=issued,
        used=used,
        cancelled=cancelled,
    )
    assert notes.cancellation is not None
    assert (notes.expiry.passes, notes.cancellation.passes) == (6, 2)
    assert notes.expiry.total_cents + notes.cancellation.total_cents == 8000
    assert [f.amount_cents for f in notes.cancellation.funder_amounts] == [1000, 600, 400]
    assert notes.cancellation.digest == hashlib.sha256(f"{issued[2]}\n{issued[3]}".encode()).hexdigest()
    assert notes.cancellation.credit_note_id != notes.expiry.credit_note_id
    without = credit_notes(
        PROGRAMME,
        face_value_cents=1000,
        funders=SHARES,
        expired_after=date(2027, 1, 31),
        issued=issued,
        used=used,
        cancelled={issued[1]},  # cancelled after it was used: nothing to credit for it
    )
    assert without.cancellation is None and without.expiry.passes == 8


@given(st.sets(st.integers(0, 30)), st.sets(st.integers(0, 30)), st.sets(st.integers(0, 40)))
def test_every_unused_pass_is_credited_exactly_once(
    used: set[int], cancelled: set[int], issued: set[int]
) -> None:
    notes = credit_notes(
        PROGRAMME,
        face_value_cents=500,
        funders=SHARES,
        expired_after=date(2027, 1, 31),
        issued=[uuid.UUID(int=i) for i in issued],
        used={uuid.UUID(int=i) for i in used},
        cancelled={uuid.UUID(int=i) for i in cancelled},
    )
    lost = notes.cancellation.passes if notes.cancellation else 0
    assert lost == len((issued - used) & cancelled)
    assert notes.expiry.passes + lost == len(issued - used)
