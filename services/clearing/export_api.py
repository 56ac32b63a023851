"""Exports: a statement as CSV or PDF, a window's payouts as a SEPA credit transfer file."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from schemas.events import StatementIssued
from services.clearing import exports, pg_store
from services.clearing.api import Reader, Rt
from services.clearing.domain.netting import Deduction
from services.clearing.domain.payouts import PayoutPlan, plan_payouts
from services.clearing.issuer_client import payout_accounts
from services.clearing.stages import Stopwatch
from services.common.auth import Principal, Role, require
from services.common.problems import Problem
from services.common.runtime import Runtime

router = APIRouter(tags=["exports"])
Finance = Annotated[Principal, Depends(require(Role.FINANCE, Role.AUDITOR))]


@router.get("/statements/{statement_id}/csv")
async def statement_csv(statement_id: uuid.UUID, rt: Rt, who: Reader) -> Response:
    """The statement's lines as CSV (amounts in integer cents); the digest is in a header."""
    st = await _readable_statement(rt, who, statement_id)
    return Response(
        exports.statement_csv(st),
        media_type="text/csv; charset=utf-8",
        headers={**_attachment(f"releve-{st.statement_id}.csv"), "x-statement-digest": st.digest},
    )


@router.get("/statements/{statement_id}/pdf")
async def statement_pdf(statement_id: uuid.UUID, rt: Rt, who: Reader) -> Response:
    """The statement as a PDF document for the site's cash office: the site's name and SIRET,
    the window's dates, per programme, per funder, every line."""
    st = await _readable_statement(rt, who, statement_id)
    names = await pg_store.names(
        rt.pool,
        sites=[st.site_id],
        funders=[f.funder_id for f in st.funder_amounts],
        programmes={line.programme_id for line in st.lines},
    )
    return Response(
        exports.statement_pdf(st, names=names),
        media_type="application/pdf",
        headers={**_attachment(f"releve-{st.statement_id}.pdf"), "x-statement-digest": st.digest},
    )


@router.get("/windows/{window_id}/payouts")
async def payouts(window_id: int, rt: Rt, who: Finance) -> dict[str, Any]:
    """What the window's SEPA file pays, and which statements it does not pay and why
    (carried-over: total at zero or below, recovered from the site's next positive statements;
    netted: wholly taken by such an earlier negative statement; held: the funders' payments do
    not cover it). A transfer pays the statement's total less its deductions, each naming the
    earlier negative statement it settles; statements themselves stay what the log says."""
    plan, _ = await _plan(rt, window_id)
    return {
        "window_id": window_id,
        "transfers": [
            {
                "statement_id": str(t.statement_id),
                "site_id": str(t.site_id),
                "gross_cents": t.gross_cents,
                "deductions": [_deduction(d) for d in t.deductions],
                "amount_cents": t.amount_cents,
            }
            for t in plan.transfers
        ],
        "total_cents": plan.total_cents,
        "not_paid": [
            {
                "statement_id": str(n.statement_id),
                "site_id": str(n.site_id),
                "total_cents": n.total_cents,
                "reason": n.reason,
                "deductions": [_deduction(d) for d in n.deductions],
                "outstanding_cents": n.outstanding_cents,
            }
            for n in plan.not_paid
        ],
        "sepa_file": f"/windows/{window_id}/payouts/sepa",
    }


def _deduction(d: Deduction) -> dict[str, Any]:
    return {
        "settles_statement_id": str(d.settles),
        "window_id": d.settles_window_id,
        "amount_cents": d.amount_cents,
    }


@router.get("/windows/{window_id}/payouts/sepa")
async def sepa_file(window_id: int, rt: Rt, who: Finance) -> Response:
    """The window's pain.001.001.03 credit transfer file; IBAN/BIC asked from the issuer now."""
    watch = Stopwatch()
    plan, statements = await _plan(rt, window_id)
    if not plan.transfers:
        raise Problem(
            409, "nothing-to-pay", "Nothing to pay in this window", f"see /windows/{window_id}/payouts"
        )
    watch.lap("payout plan")
    accounts = await payout_accounts([t.site_id for t in plan.transfers])
    watch.lap("payout details")
    xml = exports.sepa_credit_transfers(
        plan,
        accounts,
        payer=rt.extras["payer"],
        execution_date=max(s.expected_payout_date for s in statements),
    )
    watch.lap("sepa file")
    watch.record()
    return Response(
        xml,
        media_type="application/xml",
        headers={
            **_attachment(f"virements-periode-{window_id}.xml"),
            "x-transfers": str(len(plan.transfers)),
            "x-total-cents": str(plan.total_cents),
            "x-not-paid": str(len(plan.not_paid)),
        },
    )


async def _plan(rt: Runtime, window_id: int) -> tuple[PayoutPlan, list[pg_store.StatementRow]]:
    async with rt.pool.acquire() as conn:
        if not await pg_store.window_cleared(conn, window_id):
            raise Problem(
                409,
                "window-not-cleared",
                "Window not cleared",
                f"window {window_id} has partitions not yet closed in clearing",
            )
        statements = await pg_store.statement_totals(conn, window_id)
        coverage = await pg_store.coverage(conn)
    return plan_payouts(window_id, statements, held=coverage.held, netting=coverage.netting), statements


async def _readable_statement(rt: Runtime, who: Principal, statement_id: uuid.UUID) -> StatementIssued:
    row = await pg_store.statement(rt.pool, statement_id)
    # Another site's statement is answered like a missing one: its existence is not revealed.
    if row is None or (who.role == Role.SITE and str(row["site_id"]) != who.subject):
        raise Problem(404, "unknown-statement", "Unknown statement", f"no statement {statement_id} for you")
    return StatementIssued.model_validate_json(row["body"])


def _attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}
