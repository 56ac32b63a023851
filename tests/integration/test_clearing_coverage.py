"""Coverage on the real broker and database: the issuer's payment events against the statements.

Events are written to the topics directly (as the issuer and redemption would), so that a
programme can be under-paid, which the issuer's own rules never let happen."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from schemas.events import (
    FunderDue,
    FunderPaymentRecorded,
    FunderShare,
    OrderPlaced,
    PassRedeemed,
    WindowClosed,
)
from schemas.topics import TOPICS, Topic
from services.common.auth import Role
from services.common.kafka import ensure_topics
from tests.integration.helpers import auth, eventually, running
from tests.integration.produce import send

pytestmark = pytest.mark.integration

PROGRAMME, ORDER = uuid.uuid4(), uuid.uuid4()
F1, F2 = uuid.uuid4(), uuid.uuid4()
SITE_A, SITE_B = sorted((uuid.uuid4(), uuid.uuid4()), key=str)  # statements are assessed in site order
SHARES = (FunderShare(funder_id=F1, share_bp=6000), FunderShare(funder_id=F2, share_bp=4000))
T0 = datetime(2026, 11, 1, tzinfo=UTC)
FINANCE = auth(Role.FINANCE, "finance-test")


def payment(funder: uuid.UUID, cents: int) -> FunderPaymentRecorded:
    return FunderPaymentRecorded(
        payment_id=uuid.uuid4(),
        order_id=ORDER,
        programme_id=PROGRAMME,
        funder_id=funder,
        amount_cents=cents,
        bank_reference="VIR",
    )


@pytest.fixture(scope="module")
async def clearing(service_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from services.clearing.app import app

    ensure_topics(service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"])
    async with running(app) as client:
        yield client


async def test_an_uncovered_statement_is_held_until_the_funders_pay(clearing, service_env) -> None:  # type: ignore[no-untyped-def]
    bootstrap, prefix = service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"]
    order = OrderPlaced(
        order_id=ORDER,
        programme_id=PROGRAMME,
        booklets=1,
        face_value_total_cents=5000,
        funder_dues=(FunderDue(funder_id=F1, amount_cents=3000), FunderDue(funder_id=F2, amount_cents=2000)),
    )
    send(bootstrap, prefix, Topic.ISSUER, order, str(PROGRAMME))
    send(bootstrap, prefix, Topic.ISSUER, payment(F1, 3000), str(PROGRAMME))
    send(bootstrap, prefix, Topic.ISSUER, payment(F2, 2000), str(PROGRAMME))
    for n, site in enumerate([SITE_A] * 3 + [SITE_B] * 3):
        redeemed = PassRedeemed(
            redemption_id=uuid.uuid4(),
            pass_id=uuid.uuid4(),
            site_id=site,
            programme_id=PROGRAMME,
            window_id=1,
            face_value_cents=1000,
            funders=SHARES,
            learning_path="basic-skills",
            workshop_date=date(2026, 11, 2),
            accepted_at=T0 + timedelta(minutes=n),
        )
        send(bootstrap, prefix, Topic.REDEMPTIONS, redeemed, str(site))
    partitions = TOPICS[Topic.REDEMPTIONS].partitions
    for p in range(partitions):
        marker = WindowClosed(
            window_id=1,
            partition=p,
            partition_count=partitions,
            opened_at=T0,
            closed_at=T0 + timedelta(days=30),
            next_window_id=2,
        )
        # Markers go after the redemptions on every partition, as the redemption service's outbox orders them.
        send(bootstrap, prefix, Topic.REDEMPTIONS, marker, f"window-1-{p}", partition=p)

    async def plan() -> dict | None:  # type: ignore[type-arg]
        r = await clearing.get("/windows/1/payouts", headers=FINANCE)
        body = r.json() if r.status_code == 200 else None
        return body if body and body["transfers"] else None

    first = await eventually("window 1's payout plan", plan, timeout=60)
    assert [(t["site_id"], t["amount_cents"]) for t in first["transfers"]] == [(str(SITE_A), 3000)]
    assert [(n["site_id"], n["reason"]) for n in first["not_paid"]] == [(str(SITE_B), "held")]
    held_id = first["not_paid"][0]["statement_id"]
    site_b = auth(Role.SITE, str(SITE_B))
    assert (await clearing.get(f"/statements/{held_id}/payout", headers=site_b)).json()["status"] == "held"
    assert (
        await clearing.get(f"/statements/{held_id}/payout", headers=auth(Role.SITE, str(SITE_A)))
    ).status_code == 404

    rows = {r["funder_id"]: r for r in (await clearing.get("/coverage", headers=FINANCE)).json()}
    assert {
        f: (r["paid_in_cents"], r["owed_cents"], r["paid_out_cents"], r["held_cents"], r["covered"])
        for f, r in rows.items()
    } == {
        str(F1): (3000, 3600, 1800, 1800, False),
        str(F2): (2000, 2400, 1200, 1200, False),
    }
    own = (await clearing.get("/coverage", headers=auth(Role.FUNDER, str(F2)))).json()
    assert [r["funder_id"] for r in own] == [str(F2)]
    assert (await clearing.get("/coverage", headers=site_b)).status_code == 403

    # The funders pay the rest: the held statement becomes payable, nothing else changes.
    send(bootstrap, prefix, Topic.ISSUER, payment(F1, 600), str(PROGRAMME))
    send(bootstrap, prefix, Topic.ISSUER, payment(F2, 400), str(PROGRAMME))

    async def released() -> dict | None:  # type: ignore[type-arg]
        body = (await clearing.get("/windows/1/payouts", headers=FINANCE)).json()
        return body if len(body["transfers"]) == 2 else None

    after = await eventually("the held statement to be released", released, timeout=30)
    assert after["total_cents"] == 6000 and after["not_paid"] == []
    assert (await clearing.get(f"/statements/{held_id}/payout", headers=site_b)).json()["status"] == "payable"
