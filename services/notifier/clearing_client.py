"""The statement PDF a site's e-mail carries, asked from clearing's export API as role
`service` (clearing's statement routes admit it; a site's own token would reach only its own)."""

from __future__ import annotations

from uuid import UUID

import httpx

from services.common.auth import Role, issue_token
from services.common.settings import AuthSettings, ServiceUrls


class StatementPdfUnavailable(Exception):
    """Clearing could not give the PDF now (unreachable, an error, not a PDF)."""


class ClearingStatements:
    def __init__(self, client: httpx.AsyncClient, *, base_url: str | None = None) -> None:
        self._client = client
        self._base = (base_url or ServiceUrls().clearing_url).rstrip("/")
        self._token = issue_token(AuthSettings().auth_secret, Role.SERVICE, "notifier")

    async def statement_pdf(self, statement_id: UUID) -> bytes:
        try:
            response = await self._client.get(
                f"{self._base}/statements/{statement_id}/pdf",
                headers={"authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            raise StatementPdfUnavailable(f"clearing unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise StatementPdfUnavailable(
                f"clearing answered {response.status_code} for statement {statement_id}"
            )
        if not response.content.startswith(b"%PDF"):
            raise StatementPdfUnavailable(f"clearing sent no PDF for statement {statement_id}")
        return response.content
