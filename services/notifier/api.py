"""The notifier's HTTP API: a site's channels (webhook endpoints, e-mail), funders' finance
contacts, and the delivery log."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from services.common.auth import Principal, Role, require
from services.common.http import IdempotencyKey, keyed_transaction
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


def unknown_endpoint(endpoint_id: UUID) -> Problem:
    return Problem(404, "unknown-endpoint", "Unknown webhook endpoint", f"no endpoint {endpoint_id} of yours")


@router.post("/webhooks", status_code=201, tags=["channels"])
async def register_webhook(body: NewEndpoint, rt: Rt, site: Site, key: IdempotencyKey = None) -> JSONResponse:
    """Register a webhook endpoint for the calling site. The signing secret is shown once
    (and again only to a replay of the same request with the same Idempotency-Key)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        endpoint_id, secret = rt.ids.new(), new_secret()
        await conn.execute(
            "INSERT INTO webhook_endpoints (endpoint_id, site_id, url, secret) VALUES ($1, $2, $3, $4)",
            endpoint_id,
            UUID(site.subject),
            str(body.url),
            secret,
        )
        return {"endpoint_id": str(endpoint_id), "url": str(body.url), "secret": secret}

    return await keyed_transaction(rt.pool, site.label, key, body, action, 201)


@router.get("/webhooks", tags=["channels"])
async def list_webhooks(rt: Rt, who: SiteOrFinance) -> list[dict[str, Any]]:
    """The endpoints (never their secrets), with why one was disabled and until when each
    earlier secret still signs."""
    rows = await rt.pool.fetch(
        "SELECT endpoint_id, site_id, url, created_at, disabled_at, disabled_reason, consecutive_failures, "
        "ARRAY(SELECT valid_until FROM webhook_retired_secrets r WHERE r.endpoint_id = e.endpoint_id "
        "AND r.valid_until > now() ORDER BY valid_until) AS previous_secrets_until "
        "FROM webhook_endpoints e WHERE ($1::uuid IS NULL OR site_id = $1) ORDER BY created_at",
        scope(who),
    )
    return [plain(r) for r in rows]


@router.post("/webhooks/{endpoint_id}/rotate-secret", tags=["channels"])
async def rotate_secret(
    endpoint_id: UUID,
    rt: Rt,
    site: Site,
    body: Rotation | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """A new signing secret, shown once. Every earlier secret keeps signing until its own
    overlap ends (two rotations in a row keep both), so receivers switch without missing one."""
    asked = body.overlap_seconds if body else None  # 0 means "no overlap", not "the default"
    overlap = NotifierSettings().rotation_overlap_seconds if asked is None else asked

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        now = rt.clock.now()
        until, secret = now + timedelta(seconds=overlap), new_secret()
        retired = await conn.fetchval(
            "INSERT INTO webhook_retired_secrets (endpoint_id, secret, valid_until) "
            "SELECT endpoint_id, secret, $3 FROM webhook_endpoints WHERE endpoint_id = $1 AND site_id = $2 "
            "FOR UPDATE RETURNING true",
            endpoint_id,
            UUID(site.subject),
            until,
        )
        if not retired:
            raise unknown_endpoint(endpoint_id)
        await conn.execute(
            "UPDATE webhook_endpoints SET secret = $2 WHERE endpoint_id = $1", endpoint_id, secret
        )
        await conn.execute(  # spent overlaps sign nothing any more: forget them
            "DELETE FROM webhook_retired_secrets WHERE endpoint_id = $1 AND valid_until <= $2",
            endpoint_id,
            now,
        )
        return {"endpoint_id": str(endpoint_id), "secret": secret, "previous_secret_until": until.isoformat()}

    return await keyed_transaction(rt.pool, site.label, key, body, action, 200)


@router.post("/webhooks/{endpoint_id}/enable", tags=["channels"])
async def enable_webhook(endpoint_id: UUID, rt: Rt, site: Site, key: IdempotencyKey = None) -> JSONResponse:
    """Re-enable an endpoint once the site fixed it (its failure count starts again)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        done = await conn.fetchval(
            "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0 "
            "WHERE endpoint_id = $1 AND site_id = $2 RETURNING true",
            endpoint_id,
            UUID(site.subject),
        )
        if not done:
            raise unknown_endpoint(endpoint_id)
        return {"endpoint_id": str(endpoint_id), "status": "enabled"}

    return await keyed_transaction(rt.pool, site.label, key, None, action, 200)


@router.post("/emails", status_code=201, tags=["channels"])
async def register_email(body: NewEmail, rt: Rt, site: Site, key: IdempotencyKey = None) -> JSONResponse:
    """Register an e-mail address for the calling site's statements (replaces the registry's
    contact e-mail as the e-mail channel)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        channel_id = await conn.fetchval(
            "INSERT INTO email_channels (channel_id, site_id, address) VALUES ($1, $2, $3) "
            "ON CONFLICT (site_id, address) DO UPDATE SET disabled_at = NULL RETURNING channel_id",
            rt.ids.new(),
            UUID(site.subject),
            str(body.address),
        )
        return {"channel_id": str(channel_id), "address": str(body.address)}

    return await keyed_transaction(rt.pool, site.label, key, body, action, 201)


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
    "notification_id, kind, statement_id, reversal_id, site_id, funder_id, window_id, channel, endpoint_id, "
    "email_channel_id, status, attempts, last_error, next_attempt_at, created_at, delivered_at"
)
Kind = Literal["statement", "funder_statement", "reversal"]


@router.get("/deliveries", tags=["delivery log"])
async def deliveries(
    rt: Rt,
    who: SiteOrFinance,
    status: str | None = None,
    statement_id: UUID | None = None,
    kind: Kind | None = None,
    reversal_id: UUID | None = None,
) -> list[dict[str, Any]]:
    """A site sees its own notifications (statements, reversals after close); finance sees all
    (funders' e-mails too)."""
    rows = await rt.pool.fetch(
        f"SELECT {DELIVERY_FIELDS} FROM deliveries WHERE ($1::uuid IS NULL OR site_id = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR statement_id = $3) "
        "AND ($4::text IS NULL OR kind = $4) AND ($5::uuid IS NULL OR reversal_id = $5) "
        "ORDER BY created_at DESC LIMIT 500",
        scope(who),
        status,
        statement_id,
        kind,
        reversal_id,
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
        "SELECT l.notification_id, l.channel, l.attempts, l.reason, l.recorded_at, d.kind, d.site_id, "
        "d.funder_id, d.statement_id, d.reversal_id FROM notification_dead_letters l JOIN deliveries d USING (notification_id) "
        "ORDER BY l.recorded_at DESC LIMIT 500"
    )
    return [plain(r) for r in rows]
