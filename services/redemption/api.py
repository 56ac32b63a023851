"""The redemption HTTP API: accept and reverse redemptions, close clearing windows."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import RedemptionReversed, WindowClosed
from schemas.topics import Topic
from services.common.auth import Principal, Role, require
from services.common.outbox import enqueue
from services.common.problems import Problem
from services.common.runtime import Runtime
from services.redemption import pg_store
from services.redemption.domain import rules
from services.redemption.domain.rules import Refusal
from services.redemption.settings import RedemptionSettings

router = APIRouter()
log = structlog.get_logger()
PARIS = ZoneInfo("Europe/Paris")
Site = Annotated[Principal, Depends(require(Role.SITE))]
SiteOrFinance = Annotated[Principal, Depends(require(Role.SITE, Role.FINANCE))]
Finance = Annotated[Principal, Depends(require(Role.FINANCE))]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


class ReversalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: str = Field(min_length=3, max_length=500)


def refused(exc: Refusal) -> Problem:
    return Problem(exc.status, exc.slug, exc.title, exc.detail)


@router.post("/redemptions/{redemption_id}/reversal", status_code=201, tags=["redemptions"])
async def reverse(redemption_id: UUID, body: ReversalRequest, rt: Rt, who: SiteOrFinance) -> dict[str, Any]:
    """Reverse a redemption: a site its own within the reversal delay, finance any time.
    The reversal is a new event, stamped with the window open now."""
    settings: RedemptionSettings = rt.extras["settings"]
    by_site = UUID(who.subject) if who.role == Role.SITE else None
    now = rt.clock.now()
    try:
        async with rt.pool.acquire() as conn, conn.transaction():
            await pg_store.lock_window_shared(conn)
            window_id = await pg_store.open_window(conn)
            row = await pg_store.redemption_for_update(conn, redemption_id)
            rules.check_reversible(
                pg_store.redemption_view(row),
                by_site=by_site,
                now=now,
                site_delay=timedelta(hours=settings.site_reversal_hours),
            )
            assert row is not None
            reversal_id = rt.ids.new()
            await conn.execute(
                "UPDATE redemptions SET reversed = true WHERE redemption_id = $1", redemption_id
            )
            await conn.execute(
                "INSERT INTO reversals (reversal_id, redemption_id, window_id, reason, reversed_by, reversed_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                reversal_id,
                redemption_id,
                window_id,
                body.reason,
                who.label,
                now,
            )
            event = RedemptionReversed(
                reversal_id=reversal_id,
                redemption_id=redemption_id,
                pass_id=row["pass_id"],
                site_id=row["site_id"],
                programme_id=row["programme_id"],
                window_id=window_id,
                face_value_cents=row["face_value_cents"],
                funders=await pg_store.programme_funders(conn, row["programme_id"]),
                reason=body.reason,
                reversed_at=now,
            )
            await enqueue(
                conn, rt.topic(Topic.REDEMPTIONS), rt.events.envelope(event, key=str(row["site_id"]))
            )
    except Refusal as exc:
        raise refused(exc) from exc
    return {"reversal_id": str(reversal_id), "window_id": window_id}


@router.get("/redemptions", tags=["redemptions"])
async def list_redemptions(
    rt: Rt, who: SiteOrFinance, site_id: UUID | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """A site lists only its own redemptions; finance lists all, or one site's."""
    if who.role == Role.SITE:
        if site_id is not None and str(site_id) != who.subject:
            raise Problem(403, "forbidden", "Not your site", "a site reads only its own redemptions")
        site_id = UUID(who.subject)
    rows = await rt.pool.fetch(
        "SELECT redemption_id, pass_id, site_id, programme_id, window_id, face_value_cents, learning_path, "
        "workshop_date, accepted_at, reversed FROM redemptions WHERE ($1::uuid IS NULL OR site_id = $1) "
        "ORDER BY accepted_at DESC LIMIT $2",
        site_id,
        limit,
    )
    return [{k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(r).items()} for r in rows]


@router.get("/redemptions/{redemption_id}", tags=["redemptions"])
async def read_redemption(redemption_id: UUID, rt: Rt, who: SiteOrFinance) -> dict[str, Any]:
    """One redemption: a site reads only its own (another site's is answered as missing)."""
    row = await rt.pool.fetchrow(
        "SELECT redemption_id, pass_id, site_id, programme_id, window_id, face_value_cents, learning_path, "
        "workshop_date, duration_minutes, accepted_at, reversed FROM redemptions WHERE redemption_id = $1",
        redemption_id,
    )
    if row is None or (who.role == Role.SITE and str(row["site_id"]) != who.subject):
        raise Problem(
            404, "unknown-redemption", "Unknown redemption", f"no redemption {redemption_id} for you"
        )
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(row).items()}


@router.get("/windows/current", tags=["windows"])
async def current_window(rt: Rt, who: SiteOrFinance) -> dict[str, Any]:
    row = await rt.pool.fetchrow("SELECT window_id, opened_at FROM current_window")
    return {"window_id": row["window_id"], "opened_at": row["opened_at"].isoformat()}


@router.post("/windows/current/close", tags=["windows"])
async def close_window(rt: Rt, who: Finance) -> dict[str, Any]:
    """Close the open clearing window now and open the next one. A WindowClosed marker goes on
    every partition of the redemptions topic, after the window's last redemption."""
    closed = await close_current_window(rt)
    assert closed is not None
    return closed


async def close_current_window(rt: Runtime, *, only_if_period_over: bool = False) -> dict[str, Any] | None:
    """Close the open window and open the next, atomically. With `only_if_period_over`, only when
    the window's calendar month (Europe/Paris) has ended; None when there was nothing to close.
    The check runs under the lock, so two replicas ticking together close a month once."""
    partitions: int = rt.extras["redemption_partitions"]
    async with rt.pool.acquire() as conn, conn.transaction():
        # The exclusive window lock waits for every redemption holding it shared to commit, so all
        # of the window's outbox rows precede the markers (invariant 5).
        await pg_store.lock_window_exclusive(conn)
        current = await conn.fetchrow("SELECT window_id, opened_at FROM current_window")
        now = rt.clock.now()
        if only_if_period_over and not rules.period_over(current["opened_at"], now, PARIS):
            return None
        closing, next_id = current["window_id"], current["window_id"] + 1
        await conn.execute("UPDATE windows SET closed_at = $2 WHERE window_id = $1", closing, now)
        await conn.execute("INSERT INTO windows (window_id, opened_at) VALUES ($1, $2)", next_id, now)
        await conn.execute("UPDATE current_window SET window_id = $1, opened_at = $2", next_id, now)
        for partition in range(partitions):
            marker = WindowClosed(
                window_id=closing,
                partition=partition,
                partition_count=partitions,
                opened_at=current["opened_at"],
                closed_at=now,
                next_window_id=next_id,
            )
            envelope = rt.events.envelope(marker, key=f"window-{closing}")
            await enqueue(conn, rt.topic(Topic.REDEMPTIONS), envelope, partition=partition)
    return {"closed_window_id": closing, "next_window_id": next_id, "closed_at": now.isoformat()}


async def monthly_windows(rt: Runtime, stop: asyncio.Event, every_seconds: float) -> None:
    """Closes the window when its month has ended (missed ticks are harmless: the next one closes)."""
    while not stop.is_set():
        closed = await close_current_window(rt, only_if_period_over=True)
        if closed:
            log.info("monthly window closed", **closed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_seconds)
