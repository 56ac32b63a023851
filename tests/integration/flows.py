"""Reusable steps: a funded programme with active passes, through the issuer's real API."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from services.cli import scenario
from services.common.auth import Role
from tests.integration.helpers import auth

FINANCE = auth(Role.FINANCE, "finance-test")


def programme_body(funder_ids: Sequence[str], shares: Sequence[int], **terms: Any) -> dict[str, Any]:
    """What POST /programmes takes: a 2026 programme of 5-pass booklets of 10 € shared by
    `funder_ids` in `shares` (basis points, in order); `terms` replace any of the rest."""
    return {
        "name": "Pass Numérique BFC",
        "territory": "Bourgogne-Franche-Comté",
        "face_value_cents": 1000,
        "passes_per_booklet": 5,
        "valid_from": "2026-01-01",
        "valid_until": "2026-12-31",
        "grace_days": 31,
        "learning_paths": ["basic-skills"],
        "funders": [{"funder_id": f, "share_bp": bp} for f, bp in zip(funder_ids, shares, strict=True)],
        **terms,
    }


def site_body(rng: random.Random, **fields: Any) -> dict[str, Any]:
    """What POST /sites takes: a valid SIRET and IBAN drawn from `rng`; `fields` replace any."""
    return {
        "name": "Espace numérique",
        "siret": scenario.siret(rng),
        "iban": scenario.iban(rng),
        "bic": "BNPAFRPP",
        "contact_email": "site@example.org",
        **fields,
    }


@dataclass
class Programme:
    programme_id: str
    funders: list[str]
    sites: list[str]
    codes: list[str]


async def funded_programme(
    issuer: httpx.AsyncClient,
    *,
    booklets: int = 2,
    per_booklet: int = 5,
    sites: int = 2,
    shares: tuple[int, ...] = (5000, 3000, 2000),
) -> Programme:
    rng = random.Random()
    funders = []
    for i, _ in enumerate(shares):
        r = await issuer.post("/funders", json={"name": f"Funder {i}", "kind": "region"}, headers=FINANCE)
        assert r.status_code == 201, r.text
        funders.append(r.json()["funder_id"])
    body = programme_body(
        funders,
        shares,
        name="Pass Numérique test",
        territory="Test",
        passes_per_booklet=per_booklet,
        learning_paths=["basic-skills", "parenting"],
    )
    r = await issuer.post("/programmes", json=body, headers=FINANCE)
    assert r.status_code == 201, r.text
    programme_id = r.json()["programme_id"]
    site_ids = []
    for n in range(sites):
        r = await issuer.post("/sites", json=site_body(rng, name=f"Site {n}"), headers=FINANCE)
        assert r.status_code == 201, r.text
        site_ids.append(r.json()["site_id"])
        r = await issuer.post(
            f"/sites/{site_ids[-1]}/qualifications", json={"programme_id": programme_id}, headers=FINANCE
        )
        assert r.status_code == 201, r.text
    order = (
        await issuer.post(
            "/orders", json={"programme_id": programme_id, "booklets": booklets}, headers=FINANCE
        )
    ).json()
    for due in order["dues"]:
        r = await issuer.post(
            f"/orders/{order['order_id']}/payments",
            json={"amount_cents": due["amount_cents"], "bank_reference": uuid.uuid4().hex},
            headers=auth(Role.FUNDER, due["funder_id"]),
        )
        assert r.status_code == 201, r.text
    detail = (await issuer.get(f"/orders/{order['order_id']}", headers=FINANCE)).json()
    assert detail["status"] == "active"
    codes = [p["code"] for b in detail["booklets"] for p in b["passes"]]
    return Programme(programme_id, funders, site_ids, codes)
