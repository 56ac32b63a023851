"""The issuer's finance/service-only API, for the payout details a SEPA file needs.

IBAN and BIC are asked for when the file is built and kept nowhere: they never reach Kafka nor
clearing's tables (invariant 6)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import httpx
from schwifty import BIC, IBAN

from services.common.auth import Role, issue_token
from services.common.problems import Problem
from services.common.settings import AuthSettings, ServiceUrls

CONCURRENCY = 16


@dataclass(frozen=True)
class PayoutAccount:
    name: str
    iban: str
    bic: str


async def payout_accounts(site_ids: list[uuid.UUID]) -> dict[uuid.UUID, PayoutAccount]:
    token = issue_token(AuthSettings().auth_secret, Role.SERVICE, "clearing")
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=ServiceUrls().issuer_url, headers={"authorization": f"Bearer {token}"}, timeout=10
    ) as http:

        async def one(site_id: uuid.UUID) -> tuple[uuid.UUID, PayoutAccount]:
            async with gate:
                return site_id, await _fetch(http, site_id)

        return dict(await asyncio.gather(*(one(s) for s in site_ids)))


async def _fetch(http: httpx.AsyncClient, site_id: uuid.UUID) -> PayoutAccount:
    try:
        r = await http.get(f"/sites/{site_id}/payout-details")
    except httpx.HTTPError as exc:
        raise Problem(
            503, "issuer-unavailable", "The site registry did not answer", f"payout details: {exc}"
        ) from exc
    if r.status_code != 200:
        raise Problem(
            502,
            "payout-details-missing",
            "No payout details for a site",
            f"the issuer answered {r.status_code} for site {site_id}",
        )
    body = r.json()
    try:
        iban, bic = IBAN(body["iban"]), BIC(body["bic"])
    except (KeyError, ValueError) as exc:
        raise Problem(
            502, "payout-details-invalid", "Invalid payout details", f"site {site_id}: {exc}"
        ) from exc
    return PayoutAccount(name=str(body["name"]), iban=iban.compact, bic=bic.compact)
