"""Prescribers, allocation of booklets to them, distribution to beneficiaries, and erasure.

A prescriber sees only its own booklets and beneficiaries: anything else is a 404, as if it did
not exist. Beneficiaries' identities stay in the `beneficiaries` table; events carry a pseudonym.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from schemas import pass_codes as codes
from schemas.events import BookletAllocated, BookletDistributed, PrescriberRegistered
from services.common.auth import Principal, Role, require
from services.common.http import IdempotencyKey, Rt
from services.common.problems import Problem
from services.common.settings import PseudonymSettings
from services.issuer import pg_store
from services.issuer.api import Finance, emit, emit_many, transact
from services.issuer.domain.distribution import check_distributable, check_eligible, pseudonym
from services.issuer.domain.model import Refused
from services.issuer.requests import NewAllocation, NewDistribution, NewPrescriber

router = APIRouter()
Prescriber = Annotated[Principal, Depends(require(Role.PRESCRIBER))]
PrescriberOrFinance = Annotated[Principal, Depends(require(Role.PRESCRIBER, Role.FINANCE))]


@lru_cache(maxsize=1)
def pseudonym_key() -> bytes:
    return PseudonymSettings().pseudonym_secret.encode()


def scope(who: Principal) -> UUID | None:
    """The prescriber a caller is confined to; None for finance, who sees everything."""
    return UUID(who.subject) if who.role == Role.PRESCRIBER else None


@router.post("/prescribers", status_code=201, tags=["distribution"])
async def register_prescriber(
    body: NewPrescriber, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """Register a prescriber (Mission locale, France Services desk, CFA, association…)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        prescriber_id = rt.ids.new()
        await conn.execute(
            "INSERT INTO prescribers (prescriber_id, name, kind) VALUES ($1, $2, $3)",
            prescriber_id,
            body.name,
            body.kind,
        )
        event = PrescriberRegistered(prescriber_id=prescriber_id, name=body.name, kind=body.kind)
        await emit(rt, conn, event, prescriber_id)
        return {"prescriber_id": str(prescriber_id)}

    return await transact(rt, who, key, body, action)


@router.post("/prescribers/{prescriber_id}/allocations", status_code=201, tags=["distribution"])
async def allocate_booklets(
    prescriber_id: UUID, body: NewAllocation, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """Hand active, not yet allocated booklets of a programme to a prescriber."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        if not await conn.fetchval("SELECT true FROM prescribers WHERE prescriber_id = $1", prescriber_id):
            raise Refused(404, "unknown-prescriber", f"no prescriber {prescriber_id}")
        booklet_ids = await pg_store.allocate(conn, prescriber_id, body.programme_id, body.booklets)
        if len(booklet_ids) < body.booklets:
            raise Refused(
                409,
                "not-enough-booklets",
                f"{len(booklet_ids)} active unallocated booklet(s) left in this programme, "
                f"{body.booklets} asked",
            )
        events = [
            (BookletAllocated(booklet_id=b, programme_id=body.programme_id, prescriber_id=prescriber_id), b)
            for b in booklet_ids
        ]
        await emit_many(rt, conn, events)
        return {"prescriber_id": str(prescriber_id), "booklet_ids": [str(b) for b in booklet_ids]}

    return await transact(rt, who, key, body, action)


@router.get("/booklets", tags=["distribution"])
async def list_booklets(
    rt: Rt, who: PrescriberOrFinance, programme_id: UUID | None = None
) -> list[dict[str, Any]]:
    """Booklets a prescriber holds (finance: every booklet), optionally of one programme."""
    rows = await rt.pool.fetch(
        "SELECT booklet_id, programme_id, prescriber_id, status, beneficiary_id, distributed_on FROM booklets "
        "WHERE ($1::uuid IS NULL OR prescriber_id = $1) AND ($2::uuid IS NULL OR programme_id = $2) "
        "ORDER BY order_id, number",
        scope(who),
        programme_id,
    )
    return [_booklet_summary(r) for r in rows]


@router.get("/booklets/{booklet_id}", tags=["distribution"])
async def read_booklet(booklet_id: UUID, rt: Rt, who: PrescriberOrFinance) -> dict[str, Any]:
    """A booklet with its pass codes (printed form) and their status."""
    async with rt.pool.acquire() as conn:
        row = await pg_store.booklet(conn, booklet_id, scope(who))
        if row is None:
            raise Problem(404, "unknown-booklet", "Unknown booklet", f"no booklet {booklet_id}")
        passes = await conn.fetch(
            "SELECT pass_id, code, status FROM passes WHERE booklet_id = $1 ORDER BY code", booklet_id
        )
    return {
        **_booklet_summary(row),
        "passes": [
            {"pass_id": str(p["pass_id"]), "code": codes.display(p["code"]), "status": p["status"]}
            for p in passes
        ],
    }


def _booklet_summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "booklet_id": str(row["booklet_id"]),
        "programme_id": str(row["programme_id"]),
        "prescriber_id": str(row["prescriber_id"]) if row["prescriber_id"] else None,
        "status": row["status"],
        "beneficiary_id": str(row["beneficiary_id"]) if row["beneficiary_id"] else None,
        "distributed_on": row["distributed_on"].isoformat() if row["distributed_on"] else None,
    }


@router.post("/booklets/{booklet_id}/distribution", status_code=201, tags=["distribution"])
async def distribute_booklet(
    booklet_id: UUID, body: NewDistribution, rt: Rt, who: Prescriber, key: IdempotencyKey = None
) -> JSONResponse:
    """Hand one of the prescriber's booklets to an eligible beneficiary (age range of the
    programme, inclusive). The identity stays here; the event carries a keyed pseudonym."""
    prescriber_id = UUID(who.subject)

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        booklet = await pg_store.booklet_for_update(conn, booklet_id, prescriber_id)
        if booklet is None:
            raise Refused(404, "unknown-booklet", f"no booklet {booklet_id} among yours")
        check_distributable(
            booklet["status"],
            booklet["beneficiary_id"] is not None,
            booklet["valid_until"],
            booklet["grace_days"],
            body.distributed_on,
        )
        check_eligible(booklet["min_age"], booklet["max_age"], body.birth_date, body.distributed_on)
        beneficiary_id = rt.ids.new()
        alias = pseudonym(pseudonym_key(), body.given_name, body.family_name, body.birth_date)
        await pg_store.insert_beneficiary(conn, beneficiary_id, prescriber_id, alias, body)
        await conn.execute(
            "UPDATE booklets SET beneficiary_id = $2, distributed_on = $3 WHERE booklet_id = $1",
            booklet_id,
            beneficiary_id,
            body.distributed_on,
        )
        event = BookletDistributed(
            booklet_id=booklet_id,
            programme_id=booklet["programme_id"],
            prescriber_id=prescriber_id,
            beneficiary_pseudonym=alias,
            distributed_on=body.distributed_on,
        )
        await emit(rt, conn, event, booklet["programme_id"])
        return {"booklet_id": str(booklet_id), "beneficiary_id": str(beneficiary_id)}

    return await transact(rt, who, key, body, action)


@router.get("/beneficiaries/{beneficiary_id}", tags=["distribution"])
async def read_beneficiary(beneficiary_id: UUID, rt: Rt, who: PrescriberOrFinance) -> dict[str, Any]:
    """A beneficiary's record: identity until erased, then only the fact that it was."""
    row = await pg_store.beneficiary(rt.pool, beneficiary_id, scope(who))
    if row is None:
        raise Problem(404, "unknown-beneficiary", "Unknown beneficiary", f"no beneficiary {beneficiary_id}")
    return {
        "beneficiary_id": str(beneficiary_id),
        "prescriber_id": str(row["prescriber_id"]),
        "given_name": row["given_name"],
        "family_name": row["family_name"],
        "birth_date": row["birth_date"].isoformat() if row["birth_date"] else None,
        "email": row["email"],
        "erased": row["erased_at"] is not None,
    }


@router.delete("/beneficiaries/{beneficiary_id}/personal-data", tags=["distribution"])
async def erase_beneficiary(beneficiary_id: UUID, rt: Rt, who: PrescriberOrFinance) -> dict[str, Any]:
    """Erase a beneficiary's personal data on request (GDPR art. 17). The booklet stays
    distributed, events and totals are untouched: they never held the identity. Idempotent."""
    async with rt.pool.acquire() as conn, conn.transaction():
        if await pg_store.beneficiary(conn, beneficiary_id, scope(who)) is None:
            raise Problem(
                404, "unknown-beneficiary", "Unknown beneficiary", f"no beneficiary {beneficiary_id}"
            )
        await conn.execute(
            "UPDATE beneficiaries SET given_name = NULL, family_name = NULL, birth_date = NULL, email = NULL, "
            "erased_at = coalesce(erased_at, now()) WHERE beneficiary_id = $1",
            beneficiary_id,
        )
    return {"beneficiary_id": str(beneficiary_id), "erased": True}
