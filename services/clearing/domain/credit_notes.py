"""Credit notes: passes that can no longer be used go back to their funders by share. Pure.

At a programme's end (last redemption day passed, every redemption up to it cleared), each
issued pass that is not used (redeemed and not reversed) is credited once: by the cancellation
note if the issuer cancelled it (lost or stolen), by the expiry note otherwise."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from schemas.events import CancellationCreditNoteIssued, ExpiryCreditNoteIssued, FunderAmount, FunderShare
from services.common.money import split_by_shares

CREDIT_NOTE_NS = uuid.UUID("5d0c3c1e-8a43-4f4e-9f55-3a1f0b7d2c10")


def last_redemption_day(valid_until: date, grace_days: int) -> date:
    return valid_until + timedelta(days=grace_days)


def credit_note_id(programme_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CREDIT_NOTE_NS, f"expiry-credit-note:{programme_id}")


def cancellation_credit_note_id(programme_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CREDIT_NOTE_NS, f"cancellation-credit-note:{programme_id}")


@dataclass(frozen=True)
class CreditNotes:
    expiry: ExpiryCreditNoteIssued
    cancellation: CancellationCreditNoteIssued | None  # None when no cancelled pass is unused


def credit_notes(
    programme_id: uuid.UUID,
    *,
    face_value_cents: int,
    funders: tuple[FunderShare, ...],
    expired_after: date,
    issued: Iterable[uuid.UUID],
    used: Collection[uuid.UUID],
    cancelled: Collection[uuid.UUID] = (),
) -> CreditNotes:
    """Every issued pass not used is credited at its face value, by exactly one of the two notes;
    each note's total is split by the programme's shares, largest remainder, ties in funder order."""
    unused = {p for p in issued if p not in used}
    lost = sorted((p for p in unused if p in cancelled), key=str)
    expired = sorted((p for p in unused if p not in cancelled), key=str)
    expiry = ExpiryCreditNoteIssued(
        credit_note_id=credit_note_id(programme_id),
        programme_id=programme_id,
        expired_after=expired_after,
        passes=len(expired),
        face_value_cents=face_value_cents,
        total_cents=len(expired) * face_value_cents,
        funder_amounts=_split(len(expired) * face_value_cents, funders),
        digest=_digest(expired),
    )
    cancellation = (
        CancellationCreditNoteIssued(
            credit_note_id=cancellation_credit_note_id(programme_id),
            programme_id=programme_id,
            cleared_after=expired_after,
            passes=len(lost),
            face_value_cents=face_value_cents,
            total_cents=len(lost) * face_value_cents,
            funder_amounts=_split(len(lost) * face_value_cents, funders),
            digest=_digest(lost),
        )
        if lost
        else None
    )
    return CreditNotes(expiry, cancellation)


def _split(total: int, funders: tuple[FunderShare, ...]) -> tuple[FunderAmount, ...]:
    split = split_by_shares(total, [f.share_bp for f in funders])
    return tuple(
        FunderAmount(funder_id=f.funder_id, amount_cents=a) for f, a in zip(funders, split, strict=True)
    )


def _digest(passes: list[uuid.UUID]) -> str:
    return hashlib.sha256("\n".join(str(p) for p in passes).encode()).hexdigest()
