"""The notifier's HTTP API: a site's channels (webhook endpoints, e-mail), funders' finance
contacts, and the delivery log."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from services.common.auth import Principal, Role, require
from services.common.problems import Problem
from services.common.runtime import Runtime
from services.notifier.settings import NotifierSettings

router = APIRouter()
Site = Annotated[Principal, Depends(require(Role.SITE))]
Finance = Annotated[Principal, Depends(require(Role.FINANCE))]
SiteOrFinance = Annotated[Principal, Depends(require(Role.SITE, Role.FINANCE))]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: HttpUrl


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # How long the old secret keeps signing next to the new one; default from the settings.
    overlap_seconds: Annotated[float, Field(ge=0, le=30 * 86400)] | None = None


class NewEmail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    address: EmailStr


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def plain(record: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(record).items()}


def scope(who: Principal) -> UUID | None:
    """The site a caller may see (its own), or None for finance (all)."""
    return UUID(who.subject) if who.role == Role.SITE else None


@router.post("/webhooks", status_code=201, tags=["channels"])
async def register_webhook(body: NewEndpoint, rt: Rt, site: Site) -> dict[str, str]:
    """Register a webhook endpoint for the calling site. The signing secret is shown once."""
    endpoint_id = rt.ids.new()
    secret = new_secret()
    await rt.pool.execute(
        "INSERT INTO webhook_endpoints (endpoint_id, site_id, url, secret) VALUES ($1, $2, $3, $4)",
        endpoint_id,
        UUID(site.subject),
        str(body.url),
        secret,
    )
    return {"endpoint_id": str(endpoint_id), "url": str(body.url), "secret": secret}


@router.get("/webhooks", tags=["channels"])
async def list_webhooks(rt: Rt, who: SiteOrFinance) -> list[dict[str, Any]]:
    """The endpoints (never their secrets), with why one was disabled."""
    rows = await rt.pool.fetch(
        "SELECT endpoint_id, site_id, url, created_at, disabled_at, disabled_reason, consecutive_failures, "
        "previous_secret_until FROM webhook_endpoints WHERE ($1::uuid IS NULL OR site_id = $1) ORDER BY created_at",
        scope(who),
    )
    return [plain(r) for r in rows]


@router.post("/webhooks/{endpoint_id}/rotate-secret", tags=["channels"])
async def rotate_secret(
    endpoint_id: UUID, rt: Rt, site: Site, body: Rotation | None = None
) -> dict[str, str]:
    """A new signing secret, shown once. Until the overlap ends, deliveries carry a signature
    by each secret, so receivers can switch without missing one."""
    overlap = (body.overlap_seconds if body else None) or NotifierSettings().rotation_overlap_seconds
    secret = new_secret()
    until = rt.clock.now() + timedelta(seconds=overlap)
    row = await rt.pool.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $3, secret = $4 "
        "WHERE endpoint_id = $1 AND site_id = $2 RETURNING url",
        endpoint_id,
        UUID(site.subject),
        until,
        secret,
    )
    if row is None:
        raise Problem(
            404, "unknown-endpoint", "Unknown webhook endpoint", f"no endpoint {endpoint_id} of yours"
        )
    return {"endpoint_id": str(endpoint_id), "secret": secret, "previous_secret_until": until.isoformat()}


@router.post("/webhooks/{endpoint_id}/enable", tags=["channels"])
async def enable_webhook(endpoint_id: UUID, rt: Rt, site: Site) -> dict[str, str]:
    """Re-enable an endpoint once the site fixed it (its failure count starts again)."""
    done = await rt.pool.fetchval(
        "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0 "
        "WHERE endpoint_id = $1 AND site_id = $2 RETURNING true",
        endpoint_id,
        UUID(site.subject),
    )
    if not done:
        raise Problem(
            404, "unknown-endpoint", "Unknown webhook endpoint", f"no endpoint {endpoint_id} of yours"
        )
    return {"endpoint_id": str(endpoint_id), "status": "enabled"}


@router.post("/emails", status_code=201, tags=["channels"])
async def register_email(body: NewEmail, rt: Rt, site: Site) -> dict[str, str]:
    """Register an e-mail address for the calling site's statements (replaces the registry's
    contact e-mail as the e-mail channel)."""
    channel_id = await rt.pool.fetchval(
        "INSERT INTO email_channels (channel_id, site_id, address) VALUES ($1, $2, $3) "
        "ON CONFLICT (site_id, address) DO UPDATE SET disabled_at = NULL RETURNING channel_id",
        rt.ids.new(),
        UUID(site.subject),
        str(body.address),
    )
    return {"channel_id": str(channel_id), "address": str(body.address)}


@router.put("/funders/{funder_id}/finance-contact", tags=["channels"])
async def set_funder_contact(funder_id: UUID, body: NewEmail, rt: Rt, _: Finance) -> dict[str, str]:
    """Finance: where a funder's calls for funds are e-mailed."""
    await rt.pool.execute(
        "INSERT INTO funder_contacts (funder_id, address) VALUES ($1, $2) "
        "ON CONFLICT (funder_id) DO UPDATE SET address = EXCLUDED.address, updated_at = now()",
        funder_id,
        str(body.address),
    )
    return {"funder_id": str(funder_id), "address": str(body.address)}


DELIVERY_FIELDS = (
    "notification_id, statement_id, site_id, funder_id, window_id, channel, endpoint_id, email_channel_id, "
    "status, attempts, last_error, next_attempt_at, created_at, delivered_at"
)


@router.get("/deliveries", tags=["delivery log"])
async def deliveries(
    rt: Rt, who: SiteOrFinance, status: str | None = None, statement_id: UUID | None = None
) -> list[dict[str, Any]]:
    """A site sees its own notifications; finance sees all (funders' e-mails too)."""
    rows = await rt.pool.fetch(
        f"SELECT {DELIVERY_FIELDS} FROM deliveries WHERE ($1::uuid IS NULL OR site_id = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR statement_id = $3) "
        "ORDER BY created_at DESC LIMIT 500",
        scope(who),
        status,
        statement_id,
    )
    return [plain(r) for r in rows]


@router.get("/deliveries/{notification_id}", tags=["delivery log"])
async def delivery(notification_id: str, rt: Rt, who: SiteOrFinance) -> dict[str, Any]:
    """One notification with every attempt (a site only sees its own)."""
    row = await rt.pool.fetchrow(
        f"SELECT {DELIVERY_FIELDS} FROM deliveries WHERE notification_id = $1 "
        "AND ($2::uuid IS NULL OR site_id = $2)",
        notification_id,
        scope(who),
    )
    if row is None:
        raise Problem(
            404, "unknown-notification", "Unknown notification", f"no notification {notification_id}"
        )
    attempts = await rt.pool.fetch(
        "SELECT attempt, at, outcome FROM delivery_attempts WHERE notification_id = $1 ORDER BY attempt",
        notification_id,
    )
    return {**plain(row), "attempt_log": [plain(a) for a in attempts]}


@router.get("/dead-letters", tags=["delivery log"])
async def dead_letters(rt: Rt, _: Finance) -> list[dict[str, Any]]:
    """Finance: notifications whose every attempt failed."""
    rows = await rt.pool.fetch(
        "SELECT l.notification_id, l.channel, l.attempts, l.reason, l.recorded_at, d.site_id, d.funder_id, "
        "d.statement_id FROM notification_dead_letters l JOIN deliveries d USING (notification_id) "
        "ORDER BY l.recorded_at DESC LIMIT 500"
    )
    return [plain(r) for r in rows]
