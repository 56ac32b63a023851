"""What notifier tests need around the service: statements on the clearing topic, redemptions
and window markers on the redemptions topic, the topics read back, a real SMTP server (aiosmtpd)
on loopback, free ports."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from schemas.envelope import Envelope
from schemas.events import (
    FunderAmount,
    FunderShare,
    FunderStatementIssued,
    PassRedeemed,
    Payload,
    RedemptionReversed,
    StatementIssued,
    WindowClosed,
)
from schemas.topics import Topic, topic_name
from services.common.events import EventFactory
from services.common.kafka import make_producer
from services.common.ports import RandomIds, SystemClock
from tests.integration.helpers import eventually, read_topic

CLEARING = EventFactory("clearing", SystemClock(), RandomIds())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def statement(
    site_id: uuid.UUID, *, window_id: int = 1, cents: int = 3000, funders: tuple[uuid.UUID, ...] = ()
) -> StatementIssued:
    shares = [cents // len(funders)] * len(funders) if funders else []
    if shares:
        shares[0] += cents - sum(shares)
    return StatementIssued(
        statement_id=uuid.uuid4(),
        window_id=window_id,
        site_id=site_id,
        period_start=datetime(2026, 10, 1, tzinfo=UTC),
        period_end=datetime(2026, 11, 1, tzinfo=UTC),
        redemptions=cents // 1000,
        reversals=0,
        total_cents=cents,
        funder_amounts=tuple(
            FunderAmount(funder_id=f, amount_cents=a) for f, a in zip(funders, shares, strict=True)
        ),
        lines=(),
        digest="sha256:test",
        expected_payout_date=date(2026, 11, 15),
    )


def funder_statement(funder_id: uuid.UUID, window_id: int, amounts: list[int]) -> FunderStatementIssued:
    return FunderStatementIssued(
        funder_statement_id=uuid.uuid4(),
        window_id=window_id,
        funder_id=funder_id,
        amount_cents=sum(amounts),
        statements=len(amounts),
        digest="sha256:test",
    )


def publish(bootstrap: str, topic: str, payloads: list[Payload], *, key: str | None = None) -> list[Envelope]:
    envelopes = [
        CLEARING.envelope(p, key=key or str(getattr(p, "site_id", "") or p.funder_id)) for p in payloads
    ]  # type: ignore[attr-defined]
    send(bootstrap, topic, envelopes)
    return envelopes


def send(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    """Each envelope under its key, as the services' relays publish them (redemptions keyed by
    site id: one partition per site)."""
    producer = make_producer(bootstrap)
    try:
        for e in envelopes:
            producer.send(topic, key=e.key.encode(), value=e.to_bytes())
        producer.flush(30)
    finally:
        producer.close(5)


REDEMPTION = EventFactory("redemption", SystemClock(), RandomIds())
SHARES = (
    FunderShare(funder_id=uuid.UUID(int=71), share_bp=6000),
    FunderShare(funder_id=uuid.UUID(int=72), share_bp=4000),
)


def redeemed(
    site_id: uuid.UUID, window_id: int, *, cents: int = 1000, funders: tuple[FunderShare, ...] = SHARES
) -> PassRedeemed:
    return PassRedeemed(
        redemption_id=uuid.uuid4(),
        pass_id=uuid.uuid4(),
        site_id=site_id,
        programme_id=uuid.UUID(int=70),
        window_id=window_id,
        face_value_cents=cents,
        funders=funders,
        learning_path="basic-skills",
        workshop_date=date(2026, 11, 2),
        accepted_at=datetime.now(UTC),
    )


def reversed_in(r: PassRedeemed, window_id: int) -> RedemptionReversed:
    """The reversal of `r`, stamped (like the redemption service does) with the window open now."""
    return RedemptionReversed(
        reversal_id=uuid.uuid4(),
        redemption_id=r.redemption_id,
        pass_id=r.pass_id,
        site_id=r.site_id,
        programme_id=r.programme_id,
        window_id=window_id,
        face_value_cents=r.face_value_cents,
        funders=r.funders,
        reason="atelier annulé",
        reversed_at=datetime.now(UTC),
    )


def as_redemption_events(payloads: list[PassRedeemed | RedemptionReversed]) -> list[Envelope]:
    return [REDEMPTION.envelope(p, key=str(p.site_id)) for p in payloads]


def close_window(bootstrap: str, topic: str, window_id: int) -> None:
    """A WindowClosed marker on every partition, after the window's events (as closing does)."""
    producer = make_producer(bootstrap)
    try:
        partitions = sorted(producer.partitions_for(topic))
        now = datetime.now(UTC)
        for p in partitions:
            marker = WindowClosed(
                window_id=window_id,
                partition=p,
                partition_count=len(partitions),
                opened_at=now,
                closed_at=now,
                next_window_id=window_id + 1,
            )
            e = REDEMPTION.envelope(marker, key=f"window-{window_id}")
            producer.send(topic, key=e.key.encode(), value=e.to_bytes(), partition=p)
        producer.flush(30)
    finally:
        producer.close(5)


@dataclass(frozen=True)
class Log:
    """This module's topics: written as clearing and redemption write them, read as the auditor
    reads them."""

    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def topic(self, topic: Topic) -> str:
        return topic_name(topic, self.env["KAFKA_TOPIC_PREFIX"])

    def clearing(self, payloads: list[Payload], *, key: str | None = None) -> list[Envelope]:
        return publish(self.bootstrap, self.topic(Topic.CLEARING), payloads, key=key)

    def redemptions(self, events: list[PassRedeemed | RedemptionReversed | Envelope]) -> None:
        envelopes = [e if isinstance(e, Envelope) else as_redemption_events([e])[0] for e in events]
        send(self.bootstrap, self.topic(Topic.REDEMPTIONS), envelopes)

    def close_window(self, window_id: int) -> None:
        close_window(self.bootstrap, self.topic(Topic.REDEMPTIONS), window_id)

    async def read(
        self, what: str, topic: Topic, match: Callable[[dict[str, Any]], bool], n: int = 1
    ) -> list[Envelope]:
        """The events on `topic` whose payload matches, once there are `n` of them."""

        async def probe() -> list[Envelope] | None:
            records = read_topic(self.bootstrap, self.topic(topic))
            found = [e for _, _, e in records if isinstance(e, Envelope) and match(e.payload)]
            return found if len(found) >= n else None

        return await eventually(what, probe)

    async def outcomes(self, what: str, field: str, values: set[str], n: int = 1) -> list[Envelope]:
        """The notifier's NotificationDelivered/Failed (of every kind) whose `field` is in `values`."""
        return await self.read(what, Topic.NOTIFICATIONS, lambda p: p.get(field) in values, n)
