"""The documents the notifier's e-mails carry, asked from clearing's export API: a site's
statement PDF, and a funder's call for funds as CSV and PDF. Clearing is their one author: an
attachment is byte for byte what its reader downloads from clearing.

A statement is asked as role `service` (clearing's statement routes admit it). A call for funds
is asked as the funder it is addressed to: clearing's call-for-funds routes admit funders,
finance and auditors, not `service`, and a funder's token reaches only that funder's own calls,
so the notifier can never attach another funder's figures to a funder's e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import httpx

from services.common.auth import Role, issue_token
from services.common.settings import AuthSettings, ServiceUrls


class DocumentUnavailable(Exception):
    """Clearing could not give the document now (unreachable, an error, not the document)."""


@dataclass(frozen=True)
class Document:
    filename: str
    maintype: str
    subtype: str
    content: bytes


class ClearingDocuments:
    def __init__(self, client: httpx.AsyncClient, *, base_url: str | None = None) -> None:
        self._client = client
        self._base = (base_url or ServiceUrls().clearing_url).rstrip("/")
        self._secret = AuthSettings().auth_secret
        self._service_token = issue_token(self._secret, Role.SERVICE, "notifier")

    async def statement_pdf(self, statement_id: UUID) -> Document:
        content = await self._get(f"/statements/{statement_id}/pdf", self._service_token, "application/pdf")
        return Document(f"releve-{statement_id}.pdf", "application", "pdf", content)

    async def funder_statement_csv(self, funder_statement_id: UUID, funder_id: UUID) -> Document:
        return await self._call_for_funds(funder_statement_id, funder_id, "csv", "text/csv")

    async def funder_statement_pdf(self, funder_statement_id: UUID, funder_id: UUID) -> Document:
        return await self._call_for_funds(funder_statement_id, funder_id, "pdf", "application/pdf")

    async def _call_for_funds(
        self, funder_statement_id: UUID, funder_id: UUID, extension: str, media_type: str
    ) -> Document:
        token = issue_token(self._secret, Role.FUNDER, str(funder_id))
        content = await self._get(f"/funder-statements/{funder_statement_id}/{extension}", token, media_type)
        maintype, subtype = media_type.split("/")
        return Document(f"appel-de-fonds-{funder_statement_id}.{extension}", maintype, subtype, content)

    async def _get(self, path: str, token: str, media_type: str) -> bytes:
        try:
            response = await self._client.get(
                f"{self._base}{path}", headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise DocumentUnavailable(f"clearing unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise DocumentUnavailable(f"clearing answered {response.status_code} for {path}")
        if response.headers.get("content-type", "").split(";")[0].strip() != media_type or (
            media_type == "application/pdf" and not response.content.startswith(b"%PDF")
        ):
            raise DocumentUnavailable(f"clearing sent no {media_type} for {path}")
        return response.content
