"""Expiry credit notes on the real broker and database, from the issuer's and redemption's events."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from schemas.events import (
    BookletActivated,
    FunderShare,
    PassCancelled,
    PassIssued,
    PassRedeemed,
    ProgrammeRegistered,
    RedemptionReversed,
    WindowClosed,
)
from schemas.topics import TOPICS, Topic
from services.common.auth import Role
from services.common.kafka import ensure_topics
from tests.integration.helpers import auth, eventually, read_topic, running
from tests.integration.produce import send

pytestmark = pytest.mark.integration

FINANCE = auth(Role.FINANCE, "finance-test")
F1, F2, F3 = (uuid.uuid4() for _ in range(3))
SHARES = (
    FunderShare(funder_id=F1, share_bp=5000),
    FunderShare(funder_id=F2, share_bp=3000),
    FunderShare(funder_id=F3, share_bp=2000),
)
SITE = uuid.uuid4()


def programme(valid_until: date) -> ProgrammeRegistered:
    return ProgrammeRegistered(
        programme_id=uuid.uuid4(),
        name="Pass Numérique expiré",
        territory="Test",
        face_value_cents=1000,
        passes_per_booklet=10,
        valid_from=date(2025, 1, 1),
        valid_until=valid_until,
        grace_days=31,
        learning_paths=("basic-skills",),
        funders=SHARES,
    )


@pytest.fixture(scope="module")
async def clearing(service_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from services.clearing.app import app

    ensure_topics(service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"])
    async with running(app) as client:
        yield client


async def test_unused_passes_are_credited_once_after_expiry_and_clearing(clearing, service_env) -> None:  # type: ignore[no-untyped-def]
    bootstrap, prefix = service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"]
    expired, current = programme(date(2025, 12, 31)), programme(date.today() + timedelta(days=365))
    passes = tuple(PassIssued(pass_id=uuid.uuid4(), code=f"CODE{i}") for i in range(10))
    send(bootstrap, prefix, Topic.ISSUER, expired, str(expired.programme_id))
    booklet = BookletActivated(
        booklet_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        programme_id=expired.programme_id,
        face_value_cents=1000,
        valid_until=expired.valid_until,
        grace_days=31,
        passes=passes,
    )
    send(bootstrap, prefix, Topic.ISSUER, booklet, str(expired.programme_id))
    # A booklet reported stolen: pass 1 had been redeemed (used: nothing to credit), pass 2
    # redeemed then reversed (unused), pass 5 never used. Cancelled twice: counted once.
    for i in (1, 2, 5, 5):
        cancel = PassCancelled(
            pass_id=passes[i].pass_id, programme_id=expired.programme_id, reason="carnet volé"
        )
        send(bootstrap, prefix, Topic.ISSUER, cancel, str(expired.programme_id))
    # The issuer topic has one partition: once this one is known, everything above is applied.
    send(bootstrap, prefix, Topic.ISSUER, current, str(current.programme_id))
    redeemed = [
        PassRedeemed(
            redemption_id=uuid.uuid4(),
            pass_id=passes[i].pass_id,
            site_id=SITE,
            programme_id=expired.programme_id,
            window_id=1,
            face_value_cents=1000,
            funders=SHARES,
            learning_path="basic-skills",
            workshop_date=date(2025, 6, 1),
            accepted_at=datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=i),
        )
        for i in range(3)
    ]
    reversal = RedemptionReversed(
        reversal_id=uuid.uuid4(),
        redemption_id=redeemed[2].redemption_id,
        pass_id=redeemed[2].pass_id,
        site_id=SITE,
        programme_id=expired.programme_id,
        window_id=1,
        face_value_cents=1000,
        funders=SHARES,
        reason="atelier annulé",
        reversed_at=datetime(2025, 6, 2, tzinfo=UTC),
    )
    for event in (*redeemed, reversal):
        send(bootstrap, prefix, Topic.REDEMPTIONS, event, str(SITE))

    url = f"/programmes/{expired.programme_id}/expiry-credit-note"

    async def refused_until_cleared() -> dict | None:  # type: ignore[type-arg]
        r = await clearing.post(url, headers=FINANCE)
        return r.json() if r.status_code == 409 else None

    early = await eventually("the programme to reach clearing", refused_until_cleared)
    assert early["type"].endswith("/redemptions-not-cleared")

    async def known_and_still_valid() -> dict | None:  # type: ignore[type-arg]
        # The second programme follows the booklet and its cancellations: wait until it was applied.
        r = await clearing.post(f"/programmes/{current.programme_id}/expiry-credit-note", headers=FINANCE)
        return r.json() if r.status_code == 409 else None

    still = await eventually("the second programme to reach clearing", known_and_still_valid)
    assert still["type"].endswith("/programme-still-valid")
    assert (
        await clearing.post(f"/programmes/{uuid.uuid4()}/expiry-credit-note", headers=FINANCE)
    ).status_code == 404
    assert (await clearing.post(url, headers=auth(Role.FUNDER, str(F1)))).status_code == 403

    partitions = TOPICS[Topic.REDEMPTIONS].partitions
    now = datetime.now(UTC)
    for p in range(partitions):
        marker = WindowClosed(
            window_id=1,
            partition=p,
            partition_count=partitions,
            opened_at=now - timedelta(days=400),
            closed_at=now,
            next_window_id=2,
        )
        send(bootstrap, prefix, Topic.REDEMPTIONS, marker, f"w1-{p}", partition=p)

    async def issued() -> dict | None:  # type: ignore[type-arg]
        r = await clearing.post(url, headers=FINANCE)
        return r.json() if r.status_code == 200 else None

    note = await eventually("the credit note", issued)
    # Ten passes issued, three redeemed, one of them reversed: eight unused. Of those, two were
    # cancelled (passes 2 and 5): credited by the cancellation note, the six others as expired.
    assert (note["passes"], note["total_cents"], note["expired_after"]) == (6, 6000, "2026-01-31")
    assert [(f["funder_id"], f["amount_cents"]) for f in note["funder_amounts"]] == [
        (str(F1), 3000),
        (str(F2), 1800),
        (str(F3), 1200),
    ]
    again = await clearing.post(url, headers=FINANCE)
    assert again.status_code == 200 and again.json() == note
    both = (await clearing.post(f"/programmes/{expired.programme_id}/credit-notes", headers=FINANCE)).json()
    assert both["expiry"] == note
    lost = both["cancellation"]
    assert (lost["passes"], lost["total_cents"], lost["cleared_after"]) == (2, 2000, "2026-01-31")
    assert [(f["funder_id"], f["amount_cents"]) for f in lost["funder_amounts"]] == [
        (str(F1), 1000),
        (str(F2), 600),
        (str(F3), 400),
    ]
    credited = sorted(str(passes[i].pass_id) for i in (2, 5))
    assert lost["digest"] == hashlib.sha256("\n".join(credited).encode()).hexdigest()
    assert [
        (n["kind"], n["credit_note_id"])
        for n in (await clearing.get("/credit-notes", headers=auth(Role.FUNDER, str(F2)))).json()
    ] == [("expiry", note["credit_note_id"]), ("cancellation", lost["credit_note_id"])]
    assert (await clearing.get("/credit-notes", headers=auth(Role.FUNDER, str(uuid.uuid4())))).json() == []

    async def published() -> list | None:  # type: ignore[type-arg]
        records = read_topic(bootstrap, f"{prefix}{Topic.CLEARING.value}")
        notes = [e for _, _, e in records if not isinstance(e, bytes) and "CreditNote" in e.type]
        return notes if len(notes) >= 2 else None

    events = await eventually("the credit notes on the clearing topic", published)
    assert sorted((e.type, e.payload["credit_note_id"]) for e in events) == [
        ("CancellationCreditNoteIssued", lost["credit_note_id"]),
        ("ExpiryCreditNoteIssued", note["credit_note_id"]),
    ]
