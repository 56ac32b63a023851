"""The issuer's finance/service-only API (POST /sites/payout-details, in batches), for the
payout details a SEPA file needs.

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

CHUNK = 1000  # site ids per call of the issuer's batch route


@dataclass(frozen=True)
class PayoutAccount:
    name: str
    iban: str
    bic: str


async def payout_accounts(site_ids: list[uuid.UUID]) -> dict[uuid.UUID, PayoutAccount]:
    """IBAN and BIC of every site, in calls of up to CHUNK sites (POST /sites/payout-details)."""
    token = issue_token(AuthSettings().auth_secret, Role.SERVICE, "clearing")
    async with httpx.AsyncClient(
        base_url=ServiceUrls().issuer_url, headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        chunks = [site_ids[i : i + CHUNK] for i in range(0, len(site_ids), CHUNK)]
        answers = await asyncio.gather(*(_fetch(http, chunk) for chunk in chunks))
    return {site: account for answer in answers for site, account in answer.items()}


async def _fetch(http: httpx.AsyncClient, site_ids: list[uuid.UUID]) -> dict[uuid.UUID, PayoutAccount]:
    try:
        r = await http.post("/sites/payout-details", json={"site_ids": [str(s) for s in site_ids]})
    except httpx.HTTPError as exc:
        raise Problem(
            503, "issuer-unavailable", "The site registry did not answer", f"payout details: {exc}"
        ) from exc
    body = r.json() if r.status_code == 200 else {}
    if r.status_code != 200 or body.get("unknown"):
        raise Problem(
            502,
            "payout-details-missing",
            "No payout details for some sites",
            f"the issuer answered {r.status_code}; unknown sites: {body.get('unknown', [])[:10]}",
        )
    accounts = {}
    for site in body["sites"]:
        try:
            iban, bic = IBAN(site["iban"]), BIC(site["bic"])
        except (KeyError, ValueError) as exc:
            raise Problem(
                502, "payout-details-invalid", "Invalid payout details", f"site {site.get('site_id')}: {exc}"
            ) from exc
        accounts[uuid.UUID(site["site_id"])] = PayoutAccount(str(site["name"]), iban.compact, bic.compact)
    return accounts
