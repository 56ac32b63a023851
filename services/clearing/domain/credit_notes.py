"""Expiry credit notes: passes that expired unused go back to their funders by share. Pure."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable
from datetime import date, timedelta

from schemas.events import ExpiryCreditNoteIssued, FunderAmount, FunderShare
from services.common.money import split_by_shares

CREDIT_NOTE_NS = uuid.UUID("5d0c3c1e-8a43-4f4e-9f55-3a1f0b7d2c10")


def last_redemption_day(valid_until: date, grace_days: int) -> date:
    return valid_until + timedelta(days=grace_days)


def credit_note_id(programme_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CREDIT_NOTE_NS, f"expiry-credit-note:{programme_id}")


def expiry_credit_note(
    programme_id: uuid.UUID,
    *,
    face_value_cents: int,
    funders: tuple[FunderShare, ...],
    expired_after: date,
    issued: Iterable[uuid.UUID],
    used: Collection[uuid.UUID],
) -> ExpiryCreditNoteIssued:
    """Every issued pass not used (redeemed and not reversed) is credited at its face value; the
    total is split by the programme's shares, largest remainder, ties in funder order."""
    unused = sorted({p for p in issued if p not in used}, key=str)
    total = len(unused) * face_value_cents
    split = split_by_shares(total, [f.share_bp for f in funders])
    return ExpiryCreditNoteIssued(
        credit_note_id=credit_note_id(programme_id),
        programme_id=programme_id,
        expired_after=expired_after,
        passes=len(unused),
        face_value_cents=face_value_cents,
        total_cents=total,
        funder_amounts=tuple(
            FunderAmount(funder_id=f.funder_id, amount_cents=a) for f, a in zip(funders, split, strict=True)
        ),
        digest=hashlib.sha256("\n".join(str(p) for p in unused).encode()).hexdigest(),
    )
