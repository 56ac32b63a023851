"""Cancellation and expiry reach redemption: its projection of passes applies them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.flows import FINANCE, programme_body
from tests.integration.helpers import eventually, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(service_env: dict[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    from services.issuer.app import app as issuer_app
    from services.redemption.app import app as redemption_app

    async with running(issuer_app) as issuer, running(redemption_app) as redemption:
        yield issuer, redemption


async def test_expired_and_cancelled_passes_are_so_in_the_redemption_projection(stack, pg) -> None:  # type: ignore[no-untyped-def]
    issuer, _ = stack
    funder = (
        await issuer.post("/funders", json={"name": "Région", "kind": "region"}, headers=FINANCE)
    ).json()
    programme = programme_body(
        [funder["funder_id"]],
        [10_000],
        name="Pass Numérique 2024",
        territory="Lozère",
        passes_per_booklet=10,
        valid_from="2024-01-01",
        valid_until="2024-12-31",
    )
    programme_id = (await issuer.post("/programmes", json=programme, headers=FINANCE)).json()["programme_id"]
    order = (
        await issuer.post("/orders", json={"programme_id": programme_id, "booklets": 2}, headers=FINANCE)
    ).json()
    payment = {"amount_cents": 20_000, "bank_reference": "VIR-2024-001", "funder_id": funder["funder_id"]}
    r = await issuer.post(f"/orders/{order['order_id']}/payments", json=payment, headers=FINANCE)
    assert r.json()["order_status"] == "active"
    booklets = (await issuer.get(f"/orders/{order['order_id']}", headers=FINANCE)).json()["booklets"]
    stolen = booklets[0]["booklet_id"]
    r = await issuer.post(f"/booklets/{stolen}/cancellation", json={"reason": "carnet volé"}, headers=FINANCE)
    assert r.json()["cancelled_passes"] == 10
    r = await issuer.post("/expiry-runs", json={"as_of": "2025-06-01"}, headers=FINANCE)
    assert r.json()["expired_passes"] == 10  # the cancelled booklet's passes stay cancelled

    async def projected() -> dict[str, int] | None:
        rows = await pg.fetch(
            "SELECT status, count(*) AS n FROM redemption.passes WHERE programme_id = $1::uuid GROUP BY status",
            programme_id,
        )
        counts = {r["status"]: r["n"] for r in rows}
        return counts if counts == {"cancelled": 10, "expired": 10} else None

    await eventually(
        "the redemption projection to show 10 cancelled and 10 expired passes", projected, timeout=60
    )
