"""What notifier tests need around the service: statements on the clearing topic, a real SMTP
server (aiosmtpd) on loopback, free ports."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from schemas.envelope import Envelope
from schemas.events import FunderAmount, FunderStatementIssued, Payload, StatementIssued
from services.common.events import EventFactory
from services.common.kafka import make_producer
from services.common.ports import RandomIds, SystemClock

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
    producer = make_producer(bootstrap)
    try:
        for e in envelopes:
            producer.send(topic, key=e.key.encode(), value=e.to_bytes())
        producer.flush(30)
    finally:
        producer.close(5)
    return envelopes


@dataclass
class SmtpInbox:
    """A real SMTP server on loopback that keeps what it is sent."""

    messages: list[EmailMessage] = field(default_factory=list)
    port: int = 0
    _controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def start(self) -> int:
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self.port

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]
