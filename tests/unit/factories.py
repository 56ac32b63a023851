"""Deterministic events for the pure-domain tests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from schemas.envelope import Envelope
from schemas.events import FunderShare, PassRedeemed, Payload, RedemptionReversed, WindowClosed

REGION, STATE, ENEDIS = (uuid.UUID(int=i) for i in (1, 2, 3))
SHARES = (
    FunderShare(funder_id=REGION, share_bp=5000),
    FunderShare(funder_id=STATE, share_bp=3000),
    FunderShare(funder_id=ENEDIS, share_bp=2000),
)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PROGRAMME = uuid.UUID(int=100)


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=10_000 + n)


def redeemed(n: int, site: uuid.UUID, window: int = 1, cents: int = 1000, shares=SHARES) -> PassRedeemed:
    return PassRedeemed(
        redemption_id=uid(n),
        pass_id=uid(100_000 + n),
        site_id=site,
        programme_id=PROGRAMME,
        window_id=window,
        face_value_cents=cents,
        funders=shares,
        learning_path="basic-skills",
        workshop_date=date(2026, 11, 2),
        accepted_at=T0 + timedelta(minutes=n),
    )


def reversed_(r: PassRedeemed, n: int, window: int) -> RedemptionReversed:
    return RedemptionReversed(
        reversal_id=uid(50_000 + n),
        redemption_id=r.redemption_id,
        pass_id=r.pass_id,
        site_id=r.site_id,
        programme_id=r.programme_id,
        window_id=window,
        face_value_cents=r.face_value_cents,
        funders=r.funders,
        reason="workshop cancelled",
        reversed_at=T0 + timedelta(days=1, minutes=n),
    )


def closed(window: int, partition: int, partitions: int = 2) -> WindowClosed:
    return WindowClosed(
        window_id=window,
        partition=partition,
        partition_count=partitions,
        opened_at=T0 + timedelta(days=30 * (window - 1)),
        closed_at=T0 + timedelta(days=30 * window),
        next_window_id=window + 1,
    )


def envelope(payload: Payload, n: int, key: str = "k") -> Envelope:
    return Envelope(
        event_id=uuid.UUID(int=900_000 + n),
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=T0,
        producer="test",
        key=key,
        payload=payload.model_dump(mode="json"),
    )
