"""Money arithmetic shared by the issuer (what each funder owes for an order) and clearing (what
each funder owes for a statement). Integer cents and basis points only (invariants 1 and 2)."""

from __future__ import annotations

from collections.abc import Sequence

TOTAL_BASIS_POINTS = 10_000


def split_by_shares(total_cents: int, shares_bp: Sequence[int]) -> list[int]:
    """Split `total_cents` by basis-point shares, largest remainder first, ties to the earlier
    share (the programme's funder order). The parts sum to the total, and each is within one
    cent of its exact share. A negative total (a credit) splits as the mirror of its opposite.
    """
    if sum(shares_bp) != TOTAL_BASIS_POINTS or any(s < 0 for s in shares_bp):
        raise ValueError(f"shares must be non-negative and sum to {TOTAL_BASIS_POINTS}: {list(shares_bp)}")
    if total_cents < 0:
        return [-part for part in split_by_shares(-total_cents, shares_bp)]
    floors = [total_cents * s // TOTAL_BASIS_POINTS for s in shares_bp]
    remainders = [total_cents * s % TOTAL_BASIS_POINTS for s in shares_bp]
    leftover = total_cents - sum(floors)
    # sorted() is stable, so equal remainders keep the funder order.
    by_remainder = sorted(range(len(shares_bp)), key=lambda i: -remainders[i])
    for i in by_remainder[:leftover]:
        floors[i] += 1
    return floors


def split_by_weights(total_cents: int, weights: Sequence[int]) -> list[int]:
    """Split a non-negative `total_cents` in proportion to integer weights (their sum positive;
    a weight may be negative), largest remainder first, ties to the earlier weight. The parts
    sum to the total and each is within one cent of its exact share; a total equal to the sum of
    the weights gives the weights themselves."""
    whole = sum(weights)
    if total_cents < 0 or whole <= 0:
        raise ValueError(
            f"need a non-negative total and weights of positive sum: {total_cents}, {list(weights)}"
        )
    floors = [total_cents * w // whole for w in weights]
    remainders = [total_cents * w % whole for w in weights]
    leftover = total_cents - sum(floors)
    for i in sorted(range(len(weights)), key=lambda i: -remainders[i])[:leftover]:
        floors[i] += 1
    return floors


def format_eur(cents: int) -> str:
    """French display of an amount: 1 234,56 €. The only place a comma appears."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    grouped = f"{euros:,}".replace(",", "\u202f")
    return f"{sign}{grouped},{rest:02d} €"
