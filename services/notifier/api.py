"""The notifier's HTTP API: a site's webhook endpoints and the delivery log."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, HttpUrl

from services.common.auth import Principal, Role, require
from services.common.runtime import Runtime

router = APIRouter()
Site = Annotated[Principal, Depends(require(Role.SITE))]
SiteOrFinance = Annotated[Principal, Depends(require(Role.SITE, Role.FINANCE))]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: HttpUrl


@router.post("/webhooks", status_code=201, tags=["channels"])
async def register_webhook(body: NewEndpoint, rt: Rt, site: Site) -> dict[str, str]:
    """Register a webhook endpoint for the calling site. The signing secret is shown once."""
    endpoint_id = rt.ids.new()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    await rt.pool.execute(
        "INSERT INTO webhook_endpoints (endpoint_id, site_id, url, secret) VALUES ($1, $2, $3, $4)",
        endpoint_id,
        UUID(site.subject),
        str(body.url),
        secret,
    )
    return {"endpoint_id": str(endpoint_id), "url": str(body.url), "secret": secret}


@router.get("/deliveries", tags=["delivery log"])
async def deliveries(rt: Rt, who: SiteOrFinance) -> list[dict[str, Any]]:
    """A site sees its own notifications; finance sees all."""
    site = UUID(who.subject) if who.role == Role.SITE else None
    rows = await rt.pool.fetch(
        "SELECT notification_id, statement_id, site_id, endpoint_id, status, attempts, last_error, created_at, "
        "delivered_at FROM deliveries WHERE ($1::uuid IS NULL OR site_id = $1) ORDER BY created_at DESC LIMIT 500",
        site,
    )
    return [{k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(r).items()} for r in rows]
