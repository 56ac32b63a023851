"""The issuer's HTTP API: registries, programmes, funded orders and activation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from schemas import pass_codes as codes
from schemas.events import (
    BookletActivated,
    FunderDue,
    FunderPaymentRecorded,
    FunderRegistered,
    FunderShare,
    OrderPlaced,
    PassIssued,
    ProgrammeRegistered,
    SiteQualificationGranted,
    SiteRegistered,
)
from schemas.topics import Topic
from services.common.auth import Principal, Role, require
from services.common.http import IdempotencyKey, KeyedRequest, Rt, keyed_transaction
from services.common.outbox import enqueue, enqueue_many
from services.common.problems import Problem
from services.common.runtime import Runtime
from services.issuer import pg_store
from services.issuer.codes import new_codes
from services.issuer.domain.model import (
    Refused,
    Share,
    check_payment,
    check_shares,
    fully_funded,
    funder_dues,
    order_total_cents,
)
from services.issuer.requests import NewFunder, NewOrder, NewPayment, NewProgramme, NewQualification, NewSite

router = APIRouter()
Finance = Annotated[Principal, Depends(require(Role.FINANCE))]
FunderOrFinance = Annotated[Principal, Depends(require(Role.FUNDER, Role.FINANCE))]
FinanceOrService = Annotated[Principal, Depends(require(Role.FINANCE, Role.SERVICE))]


async def emit(rt: Runtime, conn: asyncpg.Connection, payload: Any, key: UUID) -> None:
    await enqueue(conn, rt.topic(Topic.ISSUER), rt.events.envelope(payload, key=str(key)))


async def transact(
    rt: Rt,
    principal: Principal,
    key: KeyedRequest | None,
    body: BaseModel,
    action: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
    status: int = 201,
) -> JSONResponse:
    """`keyed_transaction` with the issuer's domain refusals as problem bodies: a refusal rolls
    back the whole transaction, the key's claim with it, so nothing is written."""
    try:
        return await keyed_transaction(rt.pool, principal.label, key, body, action, status)
    except Refused as exc:
        raise Problem(exc.status, exc.slug, exc.slug.replace("-", " ").capitalize(), exc.detail) from exc


@router.post("/funders", status_code=201, tags=["registry"])
async def register_funder(body: NewFunder, rt: Rt, who: Finance, key: IdempotencyKey = None) -> JSONResponse:
    """Register a funder (Region, State/ANCT, Département, Enedis…)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        funder_id = rt.ids.new()
        await conn.execute(
            "INSERT INTO funders (funder_id, name, kind) VALUES ($1, $2, $3)", funder_id, body.name, body.kind
        )
        await emit(rt, conn, FunderRegistered(funder_id=funder_id, name=body.name, kind=body.kind), funder_id)
        return {"funder_id": str(funder_id)}

    return await transact(rt, who, key, body, action)


@router.post("/programmes", status_code=201, tags=["programmes"])
async def register_programme(
    body: NewProgramme, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """Register a programme with its funders' shares (basis points summing to 10 000, in order).
    Shares are never edited: a change is a new version (POST /programmes/{id}/versions)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        programme_id = await create_programme(rt, conn, body)
        return {"programme_id": str(programme_id), "version": 1}

    return await transact(rt, who, key, body, action)


async def create_programme(
    rt: Runtime,
    conn: asyncpg.Connection,
    body: NewProgramme,
    *,
    version: int = 1,
    supersedes: UUID | None = None,
) -> UUID:
    """Check and write a programme (or a new version of one) and announce it."""
    shares = [Share(f.funder_id, f.share_bp) for f in body.funders]
    check_shares(shares)
    if body.valid_until < body.valid_from:
        raise Refused(422, "invalid-validity", "valid_until is before valid_from")
    if body.min_age is not None and body.max_age is not None and body.max_age < body.min_age:
        raise Refused(422, "invalid-eligibility", "max_age is below min_age")
    missing = await pg_store.missing_funders(conn, [s.funder_id for s in shares])
    if missing:
        raise Refused(422, "unknown-funder", f"unknown funder(s): {', '.join(map(str, missing))}")
    programme_id = rt.ids.new()
    await conn.execute(
        "INSERT INTO programmes (programme_id, name, territory, face_value_cents, passes_per_booklet, "
        "valid_from, valid_until, grace_days, learning_paths, min_age, max_age, version, supersedes) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        programme_id,
        body.name,
        body.territory,
        body.face_value_cents,
        body.passes_per_booklet,
        body.valid_from,
        body.valid_until,
        body.grace_days,
        body.learning_paths,
        body.min_age,
        body.max_age,
        version,
        supersedes,
    )
    await conn.executemany(
        "INSERT INTO programme_funders (programme_id, funder_id, position, share_bp) VALUES ($1,$2,$3,$4)",
        [(programme_id, s.funder_id, i, s.share_bp) for i, s in enumerate(shares)],
    )
    event = ProgrammeRegistered(
        programme_id=programme_id,
        **body.model_dump(exclude={"funders"}),
        funders=tuple(FunderShare(funder_id=s.funder_id, share_bp=s.share_bp) for s in shares),
        version=version,
        supersedes=supersedes,
    )
    await emit(rt, conn, event, programme_id)
    return programme_id


@router.post("/sites", status_code=201, tags=["registry"])
async def register_site(body: NewSite, rt: Rt, who: Finance, key: IdempotencyKey = None) -> JSONResponse:
    """Register a qualified site. Its IBAN and contact e-mail stay in this registry."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        site_id = rt.ids.new()
        inserted = await conn.fetchval(
            "INSERT INTO sites (site_id, name, siret, iban, bic, contact_email) VALUES ($1,$2,$3,$4,$5,$6) "
            "ON CONFLICT (siret) DO NOTHING RETURNING true",
            site_id,
            body.name,
            body.siret,
            body.iban,
            body.bic,
            body.contact_email,
        )
        if not inserted:
            raise Refused(409, "site-exists", f"a site with SIRET {body.siret} is already registered")
        await emit(rt, conn, SiteRegistered(site_id=site_id, name=body.name, siret=body.siret), site_id)
        return {"site_id": str(site_id), "iban": mask_iban(body.iban)}

    return await transact(rt, who, key, body, action)


@router.post("/sites/{site_id}/qualifications", status_code=201, tags=["registry"])
async def qualify_site(
    site_id: UUID, body: NewQualification, rt: Rt, who: Finance, key: IdempotencyKey = None
) -> JSONResponse:
    """Qualify a site for a programme (habilitation)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        if not await conn.fetchval("SELECT true FROM sites WHERE site_id = $1", site_id):
            raise Refused(404, "unknown-site", f"no site {site_id}")
        if await pg_store.programme(conn, body.programme_id) is None:
            raise Refused(404, "unknown-programme", f"no programme {body.programme_id}")
        inserted = await conn.fetchval(
            "INSERT INTO qualifications (site_id, programme_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            site_id,
            body.programme_id,
        )
        if inserted:
            event = SiteQualificationGranted(site_id=site_id, programme_id=body.programme_id)
            await emit(rt, conn, event, site_id)
        return {"site_id": str(site_id), "programme_id": str(body.programme_id)}

    return await transact(rt, who, key, body, action)


@router.get("/sites/{site_id}/payout-details", tags=["registry"])
async def payout_details(site_id: UUID, rt: Rt, who: FinanceOrService) -> dict[str, str]:
    """Finance and services only: the site's IBAN, BIC and contact e-mail (never sent on Kafka)."""
    row = await rt.pool.fetchrow(
        "SELECT name, iban, bic, contact_email FROM sites WHERE site_id = $1", site_id
    )
    if row is None:
        raise Problem(404, "unknown-site", "Unknown site", f"no site {site_id}")
    return dict(row)


@router.post("/orders", status_code=201, tags=["orders"])
async def place_order(
    body: NewOrder, rt: Rt, who: FunderOrFinance, key: IdempotencyKey = None
) -> JSONResponse:
    """Order booklets for a programme. They activate once every funder has paid its share."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        programme = await pg_store.programme(conn, body.programme_id)
        if programme is None:
            raise Refused(404, "unknown-programme", f"no programme {body.programme_id}")
        shares = await pg_store.programme_shares(conn, body.programme_id)
        if who.role == Role.FUNDER and who.subject not in {str(s.funder_id) for s in shares}:
            raise Refused(403, "not-a-funder", "a funder orders only for programmes it co-finances")
        total = order_total_cents(
            body.booklets, programme["passes_per_booklet"], programme["face_value_cents"]
        )
        dues = funder_dues(total, shares)
        order_id = rt.ids.new()
        await conn.execute(
            "INSERT INTO orders (order_id, programme_id, booklets, face_value_total_cents, status) "
            "VALUES ($1, $2, $3, $4, 'awaiting_funds')",
            order_id,
            body.programme_id,
            body.booklets,
            total,
        )
        await conn.executemany(
            "INSERT INTO order_dues (order_id, funder_id, position, amount_cents) VALUES ($1, $2, $3, $4)",
            [(order_id, f, i, amount) for i, (f, amount) in enumerate(dues)],
        )
        event = OrderPlaced(
            order_id=order_id,
            programme_id=body.programme_id,
            booklets=body.booklets,
            face_value_total_cents=total,
            funder_dues=tuple(FunderDue(funder_id=f, amount_cents=a) for f, a in dues),
        )
        await emit(rt, conn, event, body.programme_id)
        return {
            "order_id": str(order_id),
            "status": "awaiting_funds",
            "face_value_total_cents": total,
            "dues": [{"funder_id": str(f), "amount_cents": a} for f, a in dues],
        }

    return await transact(rt, who, key, body, action)


@router.post("/orders/{order_id}/payments", status_code=201, tags=["orders"])
async def record_payment(
    order_id: UUID, body: NewPayment, rt: Rt, who: FunderOrFinance, key: IdempotencyKey = None
) -> JSONResponse:
    """Record a funder's payment of its share. The last share activates the order's booklets."""
    funder_id = _paying_funder(who, body)

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        order = await pg_store.order_for_update(conn, order_id)
        if order is None:
            raise Refused(404, "unknown-order", f"no order {order_id}")
        dues = await pg_store.dues(conn, order_id)
        check_payment(dues, funder_id, body.amount_cents)
        payment_id = rt.ids.new()
        await conn.execute(
            "INSERT INTO payments (payment_id, order_id, funder_id, amount_cents, bank_reference) "
            "VALUES ($1, $2, $3, $4, $5)",
            payment_id,
            order_id,
            funder_id,
            body.amount_cents,
            body.bank_reference,
        )
        event = FunderPaymentRecorded(
            payment_id=payment_id,
            order_id=order_id,
            programme_id=order["programme_id"],
            funder_id=funder_id,
            amount_cents=body.amount_cents,
            bank_reference=body.bank_reference,
        )
        await emit(rt, conn, event, order["programme_id"])
        activated = fully_funded(dues, funder_id)
        if activated:
            await activate(rt, conn, order)
        return {
            "payment_id": str(payment_id),
            "order_status": "active" if activated else "awaiting_funds",
        }

    return await transact(rt, who, key, body, action)


def _paying_funder(who: Principal, body: NewPayment) -> UUID:
    if who.role == Role.FUNDER:
        if body.funder_id is not None and str(body.funder_id) != who.subject:
            raise Problem(403, "forbidden", "Not your payment", "a funder records only its own payments")
        return UUID(who.subject)
    if body.funder_id is None:
        raise Problem(422, "invalid-request", "funder_id required", "finance must say which funder paid")
    return body.funder_id


async def activate(rt: Runtime, conn: asyncpg.Connection, order: asyncpg.Record) -> None:
    """Create the order's booklets and passes, now fully funded, and announce them."""
    programme = await pg_store.programme(conn, order["programme_id"])
    assert programme is not None
    per_booklet = programme["passes_per_booklet"]
    for attempt in range(3):
        fresh = iter(new_codes(order["booklets"] * per_booklet))
        booklets = [
            (rt.ids.new(), [(rt.ids.new(), next(fresh)) for _ in range(per_booklet)])
            for _ in range(order["booklets"])
        ]
        try:
            async with conn.transaction():  # a savepoint: a clash undoes only this attempt
                await pg_store.insert_booklets(conn, order["order_id"], order["programme_id"], booklets)
            break
        except asyncpg.UniqueViolationError:
            # ~49 random bits per code: a clash with an earlier order's code is very rare
            # (about 2e-6 for a 45 000-pass order against as many), but it must not be a 500.
            if attempt == 2:
                raise
    await conn.execute(
        "UPDATE orders SET status = 'active', activated_at = now() WHERE order_id = $1", order["order_id"]
    )
    # One pipelined insert for the whole order: 9 000 booklets are 9 000 outbox rows.
    envelopes = [
        rt.events.envelope(
            BookletActivated(
                booklet_id=booklet_id,
                order_id=order["order_id"],
                programme_id=order["programme_id"],
                face_value_cents=programme["face_value_cents"],
                valid_until=programme["valid_until"],
                grace_days=programme["grace_days"],
                passes=tuple(PassIssued(pass_id=p, code=c) for p, c in passes),
            ),
            key=str(order["programme_id"]),
        )
        for booklet_id, passes in booklets
    ]
    await enqueue_many(conn, rt.topic(Topic.ISSUER), envelopes)


@router.get("/orders/{order_id}", tags=["orders"])
async def read_order(order_id: UUID, rt: Rt, who: Finance) -> dict[str, Any]:
    """An order, its dues and, once active, its booklets with their pass codes."""
    async with rt.pool.acquire() as conn:
        order = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
        if order is None:
            raise Problem(404, "unknown-order", "Unknown order", f"no order {order_id}")
        dues = await pg_store.dues(conn, order_id)
        passes = await conn.fetch(
            "SELECT b.booklet_id, b.number, p.pass_id, p.code FROM booklets b JOIN passes p USING (booklet_id) "
            "WHERE b.order_id = $1 ORDER BY b.number, p.code",
            order_id,
        )
    booklets: dict[str, dict[str, Any]] = {}
    for row in passes:
        booklet = booklets.setdefault(
            str(row["booklet_id"]), {"booklet_id": str(row["booklet_id"]), "passes": []}
        )
        booklet["passes"].append({"pass_id": str(row["pass_id"]), "code": codes.display(row["code"])})
    return {
        "order_id": str(order_id),
        "programme_id": str(order["programme_id"]),
        "status": order["status"],
        "face_value_total_cents": order["face_value_total_cents"],
        "dues": [
            {"funder_id": str(d.funder_id), "amount_cents": d.amount_cents, "paid": d.paid} for d in dues
        ],
        "booklets": list(booklets.values()),
    }


async def emit_many(rt: Runtime, conn: asyncpg.Connection, payloads: list[tuple[Any, UUID]]) -> None:
    """`emit` for many events of one transaction, in one pipelined insert."""
    envelopes = [rt.events.envelope(p, key=str(k)) for p, k in payloads]
    await enqueue_many(conn, rt.topic(Topic.ISSUER), envelopes)


def mask_iban(iban: str) -> str:
    return f"{iban[:4]}{'*' * (len(iban) - 8)}{iban[-4:]}"


class PayoutDetailsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_ids: list[UUID] = Field(min_length=1, max_length=1000)


@router.post("/sites/payout-details", tags=["registry"])
async def payout_details_batch(body: PayoutDetailsQuery, rt: Rt, who: FinanceOrService) -> dict[str, Any]:
    """Finance and services only: IBAN and BIC of up to 1,000 sites in one call (a window's SEPA
    file pays 10,000 sites; one GET each would take most of a minute). Reads only; unknown ids
    are listed, not refused."""
    rows = await rt.pool.fetch(
        "SELECT site_id, name, iban, bic FROM sites WHERE site_id = ANY($1::uuid[])", body.site_ids
    )
    found = {r["site_id"] for r in rows}
    return {
        "sites": [{**dict(r), "site_id": str(r["site_id"])} for r in rows],
        "unknown": [str(s) for s in body.site_ids if s not in found],
    }
