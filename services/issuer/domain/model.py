"""Issuer rules: programmes, funded orders and activation. Pure decisions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from services.common.money import TOTAL_BASIS_POINTS, split_by_shares


class Refused(Exception):
    """A command the rules refuse; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail


@dataclass(frozen=True)
class Share:
    funder_id: UUID
    share_bp: int


def check_shares(shares: list[Share]) -> None:
    if not 1 <= len(shares) <= 6:
        raise Refused(422, "invalid-shares", "a programme has between 1 and 6 funders")
    if any(s.share_bp <= 0 for s in shares):
        raise Refused(422, "invalid-shares", "every funder's share must be positive")
    total = sum(s.share_bp for s in shares)
    if total != TOTAL_BASIS_POINTS:
        raise Refused(422, "invalid-shares", f"shares sum to {total} basis points, not {TOTAL_BASIS_POINTS}")
    if len({s.funder_id for s in shares}) != len(shares):
        raise Refused(422, "invalid-shares", "a funder appears twice in the shares")


def order_total_cents(booklets: int, passes_per_booklet: int, face_value_cents: int) -> int:
    return booklets * passes_per_booklet * face_value_cents


def funder_dues(total_cents: int, shares: list[Share]) -> list[tuple[UUID, int]]:
    """What each funder must pay for an order, split like a statement (largest remainder)."""
    parts = split_by_shares(total_cents, [s.share_bp for s in shares])
    return [(s.funder_id, part) for s, part in zip(shares, parts, strict=True)]


@dataclass(frozen=True)
class Due:
    funder_id: UUID
    amount_cents: int
    paid: bool


def check_payment(dues: list[Due], funder_id: UUID, amount_cents: int) -> None:
    """A funder pays its whole due for an order, once."""
    due = next((d for d in dues if d.funder_id == funder_id), None)
    if due is None:
        raise Refused(422, "not-a-funder", "this funder has no share in the order's programme")
    if due.paid:
        raise Refused(409, "already-paid", "this funder has already paid its share of the order")
    if amount_cents != due.amount_cents:
        raise Refused(
            422,
            "wrong-amount",
            f"the funder's share of the order is {due.amount_cents} cents, the payment is {amount_cents}",
        )


def fully_funded(dues: list[Due], paying: UUID) -> bool:
    """True when the payment of `paying` is the last share the order was waiting for."""
    return all(d.paid or d.funder_id == paying for d in dues)
