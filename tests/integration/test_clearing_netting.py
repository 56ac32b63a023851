"""Netting, calls for funds as documents, and names on the PDFs, on the real broker and database.

A site goes negative in window 2 (its window-1 redemptions reversed); its window-3 statement is
wholly taken by that debt and its window-4 statement pays the rest: the statements and calls for
funds stay what each window's events say, the payout plans net, coverage pays out the net."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.events import (
    FunderDue,
    FunderPaymentRecorded,
    FunderRegistered,
    FunderShare,
    OrderPlaced,
    PassRedeemed,
    Payload,
    ProgrammeRegistered,
    RedemptionReversed,
    SiteRegistered,
    WindowClosed,
)
from schemas.topics import TOPICS, Topic
from services.clearing.domain.statements import digest
from services.common.auth import Role
from services.common.kafka import ensure_topics
from tests.integration.helpers import auth, eventually, running
from tests.integration.produce import send
from tests.pdf_text import pdf_text

pytestmark = pytest.mark.integration

PROGRAMME, ORDER = uuid.uuid4(), uuid.uuid4()
F1, F2 = uuid.uuid4(), uuid.uuid4()
SITE, OTHER = uuid.uuid4(), uuid.uuid4()
SHARES = (FunderShare(funder_id=F1, share_bp=6000), FunderShare(funder_id=F2, share_bp=4000))
T0 = datetime(2026, 7, 1, 6, tzinfo=UTC)
FINANCE = auth(Role.FINANCE, "finance-test")
SIRET = "73282932000074"


@pytest.fixture(scope="module")
async def clearing(service_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from services.clearing.app import app

    ensure_topics(service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"])
    async with running(app) as client:
        yield client


def redeemed(site: uuid.UUID, window: int, n: int) -> PassRedeemed:
    return PassRedeemed(
        redemption_id=uuid.uuid4(),
        pass_id=uuid.uuid4(),
        site_id=site,
        programme_id=PROGRAMME,
        window_id=window,
        face_value_cents=1000,
        funders=SHARES,
        learning_path="basic-skills",
        workshop_date=date(2026, 7, 2),
        accepted_at=T0 + timedelta(days=30 * (window - 1), minutes=n),
    )


def reversal(r: PassRedeemed, window: int) -> RedemptionReversed:
    return RedemptionReversed(
        reversal_id=uuid.uuid4(),
        redemption_id=r.redemption_id,
        pass_id=r.pass_id,
        site_id=r.site_id,
        programme_id=PROGRAMME,
        window_id=window,
        face_value_cents=1000,
        funders=SHARES,
        reason="atelier non tenu",
        reversed_at=T0 + timedelta(days=30 * (window - 1), hours=1),
    )


async def test_a_negative_statement_is_netted_once_and_documents_name_who_and_when(
    clearing: httpx.AsyncClient, service_env: dict[str, str]
) -> None:
    bootstrap, prefix = service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"]

    def issuer(payload: Payload) -> None:
        send(bootstrap, prefix, Topic.ISSUER, payload, str(PROGRAMME))

    def redemptions(payload: PassRedeemed | RedemptionReversed) -> None:
        send(bootstrap, prefix, Topic.REDEMPTIONS, payload, str(payload.site_id))

    issuer(FunderRegistered(funder_id=F1, name="Région Test", kind="region"))
    issuer(FunderRegistered(funder_id=F2, name="ANCT", kind="state"))
    issuer(
        ProgrammeRegistered(
            programme_id=PROGRAMME,
            name="Pass Numérique netting",
            territory="Test",
            face_value_cents=1000,
            passes_per_booklet=10,
            valid_from=date(2026, 1, 1),
            valid_until=date(2027, 12, 31),
            grace_days=31,
            learning_paths=("basic-skills",),
            funders=SHARES,
        )
    )
    issuer(SiteRegistered(site_id=SITE, name="Espace numérique de Dole", siret=SIRET))
    dues = (FunderDue(funder_id=F1, amount_cents=6000), FunderDue(funder_id=F2, amount_cents=4000))
    issuer(
        OrderPlaced(
            order_id=ORDER,
            programme_id=PROGRAMME,
            booklets=1,
            face_value_total_cents=10_000,
            funder_dues=dues,
        )
    )
    for d in dues:
        issuer(
            FunderPaymentRecorded(
                payment_id=uuid.uuid4(),
                order_id=ORDER,
                programme_id=PROGRAMME,
                funder_id=d.funder_id,
                amount_cents=d.amount_cents,
                bank_reference="VIR",
            )
        )

    first = [redeemed(SITE, 1, n) for n in range(2)]
    windows: dict[int, list[PassRedeemed | RedemptionReversed]] = {
        1: [*first, redeemed(OTHER, 1, 5)],
        2: [reversal(r, 2) for r in first] + [redeemed(OTHER, 2, 6)],  # SITE: −20 €
        3: [redeemed(SITE, 3, 7)],  # +10 €: wholly taken by the debt
        4: [redeemed(SITE, 4, n) for n in (8, 9, 10)],  # +30 €: 10 € of debt left, 20 € paid
    }
    partitions = TOPICS[Topic.REDEMPTIONS].partitions
    for window, events in windows.items():
        for event in events:
            redemptions(event)
        for p in range(partitions):
            marker = WindowClosed(
                window_id=window,
                partition=p,
                partition_count=partitions,
                opened_at=T0 + timedelta(days=30 * (window - 1)),
                closed_at=T0 + timedelta(days=30 * window),
                next_window_id=window + 1,
            )
            send(bootstrap, prefix, Topic.REDEMPTIONS, marker, f"w{window}-{p}", partition=p)

    async def plan(window: int) -> dict[str, Any] | None:
        r = await clearing.get(f"/windows/{window}/payouts", headers=FINANCE)
        return r.json() if r.status_code == 200 else None

    await eventually("window 4 to be cleared", lambda: plan(4), timeout=60)
    statements = {
        (s["site_id"], s["window_id"]): s for s in (await clearing.get("/statements", headers=FINANCE)).json()
    }
    # The statements are what the log says, window by window: gross.
    assert {k: s["total_cents"] for k, s in statements.items()} == {
        (str(SITE), 1): 2000,
        (str(OTHER), 1): 1000,
        (str(SITE), 2): -2000,
        (str(OTHER), 2): 1000,
        (str(SITE), 3): 1000,
        (str(SITE), 4): 3000,
    }
    debt = statements[(str(SITE), 2)]["statement_id"]
    w3, w4 = statements[(str(SITE), 3)]["statement_id"], statements[(str(SITE), 4)]["statement_id"]

    p2, p3, p4 = (await plan(2)), (await plan(3)), (await plan(4))
    assert p2 is not None and p3 is not None and p4 is not None
    assert [(n["statement_id"], n["reason"], n["outstanding_cents"]) for n in p2["not_paid"]] == [
        (debt, "carried-over", 2000)
    ]
    assert [(t["site_id"], t["amount_cents"]) for t in p2["transfers"]] == [(str(OTHER), 1000)]
    assert p3["transfers"] == [] and p3["total_cents"] == 0
    assert [(n["statement_id"], n["reason"], n["deductions"]) for n in p3["not_paid"]] == [
        (w3, "netted", [{"settles_statement_id": debt, "window_id": 2, "amount_cents": 1000}])
    ]
    assert p4["transfers"] == [
        {
            "statement_id": w4,
            "site_id": str(SITE),
            "gross_cents": 3000,
            "deductions": [{"settles_statement_id": debt, "window_id": 2, "amount_cents": 1000}],
            "amount_cents": 2000,
        }
    ]
    # Asked again, the plans are the same: a cent of debt is deducted once.
    assert (await plan(3), await plan(4)) == (p3, p4)
    nothing = await clearing.get("/windows/3/payouts/sepa", headers=FINANCE)
    assert nothing.status_code == 409 and nothing.json()["type"].endswith("/nothing-to-pay")

    site = auth(Role.SITE, str(SITE))
    status = (await clearing.get(f"/statements/{debt}/payout", headers=site)).json()
    assert (status["status"], status["outstanding_cents"]) == ("carried-over", 0)
    assert [(s["statement_id"], s["amount_cents"], s["held"]) for s in status["settled_by"]] == [
        (w3, 1000, False),
        (w4, 1000, False),
    ]
    assert (await clearing.get(f"/statements/{w3}/payout", headers=site)).json()["status"] == "netted"
    paid = (await clearing.get(f"/statements/{w4}/payout", headers=site)).json()
    assert (paid["status"], paid["net_cents"]) == ("payable", 2000)

    # Coverage pays out the net: once the debt is settled, paid out is what is owed.
    rows = {r["funder_id"]: r for r in (await clearing.get("/coverage", headers=FINANCE)).json()}
    assert {f: (r["owed_cents"], r["paid_out_cents"], r["held_cents"]) for f, r in rows.items()} == {
        str(F1): (3600, 3600, 0),
        str(F2): (2400, 2400, 0),
    }
    paid_in_plans = sum(
        t["amount_cents"] for p in [await plan(1), p2, p3, p4] if p is not None for t in p["transfers"]
    )
    assert paid_in_plans == 6000

    # The calls for funds stay gross, per window: window 2 asks F1 for 60 % of (−20 € + 10 €).
    calls = (await clearing.get("/funder-statements", params={"window_id": 2}, headers=FINANCE)).json()
    assert {c["funder_id"]: c["amount_cents"] for c in calls} == {str(F1): -600, str(F2): -400}
    await _calls_for_funds_as_documents(clearing)
    await _statement_pdf_names_the_site(clearing, statements[(str(SITE), 4)])


async def _calls_for_funds_as_documents(clearing: httpx.AsyncClient) -> None:
    (call,) = (
        await clearing.get("/funder-statements", params={"window_id": 1}, headers=auth(Role.FUNDER, str(F1)))
    ).json()
    url = f"/funder-statements/{call['funder_statement_id']}"
    own = auth(Role.FUNDER, str(F1))
    assert (await clearing.get(url, headers=own)).json() == call
    r = await clearing.get(f"{url}/csv", headers=own)
    assert r.status_code == 200 and r.headers["x-statement-digest"] == call["digest"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted((row["site_id"], int(row["amount_cents"])) for row in rows) == sorted(
        [(str(SITE), 1200), (str(OTHER), 600)]
    )
    assert (
        digest(
            {"statement_id": row["statement_id"], "amount_cents": int(row["amount_cents"])} for row in rows
        )
        == call["digest"]
    )
    for who in (auth(Role.FUNDER, str(F2)), auth(Role.FUNDER, str(uuid.uuid4()))):
        for suffix in ("", "/csv", "/pdf"):
            refused = await clearing.get(f"{url}{suffix}", headers=who)
            assert refused.status_code == 404 and refused.json()["type"].endswith("/unknown-funder-statement")
    assert (await clearing.get(f"{url}/pdf", headers=auth(Role.SITE, str(SITE)))).status_code == 403
    assert (await clearing.get(f"/funder-statements/{uuid.uuid4()}/csv", headers=FINANCE)).status_code == 404
    pdf = await clearing.get(f"{url}/pdf", headers=FINANCE)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    text = pdf_text(pdf.content)
    for shown in (
        "Région Test",
        "Pass Numérique netting",
        "du 01/07/2026 08:00 au 31/07/2026 08:00 (heure de Paris)",
        "Espace numérique de Dole",
        "732 829 320 00074",
        str(OTHER),  # no SiteRegistered for it: its id stands in
        "18,00 €",
    ):
        assert shown in text, shown


async def _statement_pdf_names_the_site(clearing: httpx.AsyncClient, statement: dict[str, Any]) -> None:
    r = await clearing.get(f"/statements/{statement['statement_id']}/pdf", headers=auth(Role.SITE, str(SITE)))
    assert r.status_code == 200
    text = pdf_text(r.content)
    for shown in (
        "Espace numérique de Dole",
        "SIRET 732 829 320 00074",
        "du 29/09/2026 08:00 au 29/10/2026 07:00 (heure de Paris)",  # window 4, across the DST change
        "Pass Numérique netting",
        "Région Test",
    ):
        assert shown in text, shown
