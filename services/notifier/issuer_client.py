"""The one synchronous question the notifier asks the issuer: a site's contact e-mail, from
its finance/service-only registry route (contact addresses never travel on Kafka)."""

from __future__ import annotations

from uuid import UUID

import httpx

from services.common.auth import Role, issue_token
from services.common.settings import AuthSettings, ServiceUrls


class ContactUnavailable(Exception):
    """The issuer could not tell the address now; the delivery is retried on its schedule."""


class IssuerContacts:
    def __init__(self, client: httpx.AsyncClient, *, base_url: str | None = None) -> None:
        self._client = client
        self._base = (base_url or ServiceUrls().issuer_url).rstrip("/")
        self._token = issue_token(AuthSettings().auth_secret, Role.SERVICE, "notifier")

    async def site_contact_email(self, site_id: UUID) -> str:
        try:
            response = await self._client.get(
                f"{self._base}/sites/{site_id}/payout-details",
                headers={"authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            raise ContactUnavailable(f"issuer unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ContactUnavailable(f"issuer answered {response.status_code} for site {site_id}")
        address = response.json().get("contact_email")
        if not address:
            raise ContactUnavailable(f"site {site_id} has no contact e-mail in the registry")
        return str(address)
