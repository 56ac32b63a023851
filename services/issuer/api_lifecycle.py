"""Cancellation, expiry, qualification withdrawal, programme versions, site reads, sheets."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from schemas.events import PassCancelled, PassExpired, SiteQualificationWithdrawn
from services.common.http import IdempotencyKey, Rt
from services.common.problems import Problem
from services.issuer import pg_store, sheets
from services.issuer.api import (
    Finance,
    FinanceOrService,
    create_programme,
    emit,
    emit_many,
    mask_iban,
    transact,
)
from services.issuer.api_distribution import PrescriberOrFinance, scope
from services.issuer.domain.model import Refused
from services.issuer.requests import NewCancellation, NewExpiryRun, NewProgramme, NewProgrammeVersion

router = APIRouter()


@router.post("/booklets/{booklet_id}/cancellation", status_code=201, tags=["lifecycle"])
async def cancel_booklet(
    booklet_id: UUID, body: NewCancellation, rt: Rt, who: PrescriberOrFinance, key: IdempotencyKey = None
) -> JSONResponse:
    """Cancel a lost or stolen booklet: each of its passes not yet expired is cancelled
    (one PassCancelled per pass), so redemption refuses them."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        booklet = await pg_store.booklet_for_update(conn, booklet_id, scope(who))
        if booklet is None:
            raise Refused(404, "unknown-booklet", f"no booklet {booklet_id}")
        if booklet["status"] == "cancelled":
            raise Refused(409, "booklet-cancelled", "this booklet is already cancelled")
        await conn.execute(
            "UPDATE booklets SET status = 'cancelled', cancel_reason = $2 WHERE booklet_id = $1",
            booklet_id,
            body.reason,
        )
        passes = await conn.fetch(
            "UPDATE passes SET status = 'cancelled' WHERE booklet_id = $1 AND status = 'active' RETURNING pass_id",
            booklet_id,
        )
        programme_id = booklet["programme_id"]
        events = [
            (PassCancelled(pass_id=p["pass_id"], programme_id=programme_id, reason=body.reason), programme_id)
            for p in passes
        ]
        await emit_many(rt, conn, events)
        return {"booklet_id": str(booklet_id), "cancelled_passes": len(passes)}

    return await transact(rt, who, key, body, action)


@router.post("/passes/{pass_id}/cancellation", status_code=201, tags=["lifecycle"])
async def cancel_pass(
    pass_id: UUID, body: NewCancellation, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """Cancel one lost or stolen pass."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await conn.fetchrow(
            "SELECT p.status, b.programme_id FROM passes p JOIN booklets b USING (booklet_id) "
            "WHERE p.pass_id = $1 FOR UPDATE OF p",
            pass_id,
        )
        if row is None:
            raise Refused(404, "unknown-pass", f"no pass {pass_id}")
        if row["status"] != "active":
            raise Refused(409, f"pass-{row['status']}", f"this pass is already {row['status']}")
        await conn.execute("UPDATE passes SET status = 'cancelled' WHERE pass_id = $1", pass_id)
        event = PassCancelled(pass_id=pass_id, programme_id=row["programme_id"], reason=body.reason)
        await emit(rt, conn, event, row["programme_id"])
        return {"pass_id": str(pass_id), "status": "cancelled"}

    return await transact(rt, who, key, body, action)


@router.post("/expiry-runs", status_code=201, tags=["lifecycle"])
async def run_expiry(body: NewExpiryRun, rt: Rt, who: Finance, key: IdempotencyKey = None) -> JSONResponse:
    """Expire every active pass whose programme's validity plus grace ended before `as_of`
    (one PassExpired per pass). Idempotent: a second run for the same day expires nothing more,
    so a scheduler may call it daily and retry freely."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        rows = await conn.fetch(
            "UPDATE passes p SET status = 'expired' FROM booklets b JOIN programmes g USING (programme_id) "
            "WHERE p.booklet_id = b.booklet_id AND p.status = 'active' "
            "AND g.valid_until + g.grace_days < $1::date "
            "RETURNING p.pass_id, b.programme_id, g.valid_until + g.grace_days + 1 AS expired_on",
            body.as_of,
        )
        events = [
            (
                PassExpired(pass_id=r["pass_id"], programme_id=r["programme_id"], expired_on=r["expired_on"]),
                r["programme_id"],
            )
            for r in rows
        ]
        await emit_many(rt, conn, events)
        return {"as_of": body.as_of.isoformat(), "expired_passes": len(rows)}

    return await transact(rt, who, key, body, action)


@router.delete("/sites/{site_id}/qualifications/{programme_id}", tags=["registry"])
async def withdraw_qualification(site_id: UUID, programme_id: UUID, rt: Rt, who: Finance) -> dict[str, str]:
    """Withdraw a site's qualification for a programme: it can no longer accept its passes."""
    async with rt.pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM qualifications WHERE site_id = $1 AND programme_id = $2 RETURNING true",
            site_id,
            programme_id,
        )
        if not deleted:
            raise Problem(
                404, "not-qualified", "Not qualified", "this site is not qualified for this programme"
            )
        await emit(rt, conn, SiteQualificationWithdrawn(site_id=site_id, programme_id=programme_id), site_id)
    return {"site_id": str(site_id), "programme_id": str(programme_id), "status": "withdrawn"}


@router.get("/sites/{site_id}", tags=["registry"])
async def read_site(site_id: UUID, rt: Rt, who: FinanceOrService) -> dict[str, Any]:
    """A site, its IBAN masked (the full one is in the finance-only payout details)."""
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT site_id, name, siret, iban, bic FROM sites WHERE site_id = $1", site_id
        )
        if row is None:
            raise Problem(404, "unknown-site", "Unknown site", f"no site {site_id}")
        programmes = await conn.fetch("SELECT programme_id FROM qualifications WHERE site_id = $1", site_id)
    return {
        "site_id": str(site_id),
        "name": row["name"],
        "siret": row["siret"],
        "iban": mask_iban(row["iban"]),
        "bic": row["bic"],
        "qualified_for": sorted(str(p["programme_id"]) for p in programmes),
    }


@router.post("/programmes/{programme_id}/versions", status_code=201, tags=["programmes"])
async def new_programme_version(
    programme_id: UUID, body: NewProgrammeVersion, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """A programme's shares are fixed once registered (orders and statements rely on them):
    a change is a new version, a new programme that supersedes it, never an edit."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        old = await pg_store.programme(conn, programme_id)
        if old is None:
            raise Refused(404, "unknown-programme", f"no programme {programme_id}")
        terms = NewProgramme(
            name=old["name"],
            territory=old["territory"],
            face_value_cents=old["face_value_cents"],
            passes_per_booklet=old["passes_per_booklet"],
            valid_from=body.valid_from or old["valid_from"],
            valid_until=body.valid_until or old["valid_until"],
            grace_days=old["grace_days"],
            learning_paths=list(old["learning_paths"]),
            funders=body.funders,
            min_age=old["min_age"],
            max_age=old["max_age"],
        )
        new_id = await create_programme(rt, conn, terms, version=old["version"] + 1, supersedes=programme_id)
        return {"programme_id": str(new_id), "version": old["version"] + 1, "supersedes": str(programme_id)}

    return await transact(rt, who, key, body, action)


@router.get("/programmes/{programme_id}/summary", tags=["programmes"])
async def programme_summary(programme_id: UUID, rt: Rt, who: Finance) -> dict[str, Any]:
    """Totals of a programme: ordered, funded, active, distributed, cancelled, expired."""
    row = await rt.pool.fetchrow(
        "SELECT "
        " (SELECT coalesce(sum(face_value_total_cents), 0)::bigint FROM orders WHERE programme_id = $1) AS ordered_cents,"
        " (SELECT coalesce(sum(p.amount_cents), 0)::bigint FROM payments p JOIN orders o USING (order_id)"
        "   WHERE o.programme_id = $1) AS paid_cents,"
        " (SELECT count(*) FROM booklets WHERE programme_id = $1) AS booklets,"
        " (SELECT count(*) FROM booklets WHERE programme_id = $1 AND beneficiary_id IS NOT NULL) AS distributed,"
        " (SELECT count(*) FROM booklets WHERE programme_id = $1 AND status = 'cancelled') AS cancelled_booklets,"
        " (SELECT count(*) FILTER (WHERE p.status = 'active') FROM passes p JOIN booklets b USING (booklet_id)"
        "   WHERE b.programme_id = $1) AS active_passes,"
        " (SELECT count(*) FILTER (WHERE p.status = 'cancelled') FROM passes p JOIN booklets b USING (booklet_id)"
        "   WHERE b.programme_id = $1) AS cancelled_passes,"
        " (SELECT count(*) FILTER (WHERE p.status = 'expired') FROM passes p JOIN booklets b USING (booklet_id)"
        "   WHERE b.programme_id = $1) AS expired_passes",
        programme_id,
    )
    if await rt.pool.fetchval("SELECT true FROM programmes WHERE programme_id = $1", programme_id) is None:
        raise Problem(404, "unknown-programme", "Unknown programme", f"no programme {programme_id}")
    return {"programme_id": str(programme_id), **dict(row)}


@router.get("/booklets/{booklet_id}/sheet.pdf", tags=["distribution"], response_class=Response)
async def booklet_sheet(booklet_id: UUID, rt: Rt, who: PrescriberOrFinance) -> Response:
    """The booklet as a printable PDF sheet: each pass's code, printed and as a QR code."""
    async with rt.pool.acquire() as conn:
        booklet = await pg_store.booklet(conn, booklet_id, scope(who))
        if booklet is None:
            raise Problem(404, "unknown-booklet", "Unknown booklet", f"no booklet {booklet_id}")
        programme = await pg_store.programme(conn, booklet["programme_id"])
        passes = await conn.fetch("SELECT code FROM passes WHERE booklet_id = $1 ORDER BY code", booklet_id)
    assert programme is not None
    pdf = sheets.render(
        sheets.Sheet(
            programme=programme["name"],
            territory=programme["territory"],
            booklet_id=str(booklet_id),
            face_value_cents=programme["face_value_cents"],
            valid_until=programme["valid_until"],
            codes=[p["code"] for p in passes],
        )
    )
    return Response(pdf, media_type="application/pdf")
