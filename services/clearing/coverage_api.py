"""Coverage: per programme and funder, paid in vs redeemed-and-owed vs paid out."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.clearing import pg_store
from services.clearing.api import Rt
from services.clearing.domain.netting import Netting
from services.clearing.domain.payouts import CARRIED_OVER, HELD, NETTED
from services.common.auth import Principal, Role, require
from services.common.problems import Problem

router = APIRouter(tags=["coverage"])
CoverageReader = Annotated[Principal, Depends(require(Role.FUNDER, Role.FINANCE, Role.AUDITOR))]
StatementReader = Annotated[Principal, Depends(require(Role.SITE, Role.FINANCE, Role.AUDITOR, Role.SERVICE))]


@router.get("/coverage")
async def coverage(rt: Rt, who: CoverageReader) -> list[dict[str, Any]]:
    """Per programme and funder (a funder sees only its own rows): ordered, paid in, owed for
    cleared statements, paid out, and held for lack of coverage."""
    rows = (await pg_store.coverage(rt.pool)).rows
    return [
        {
            "programme_id": str(r.programme_id),
            "funder_id": str(r.funder_id),
            "ordered_cents": r.ordered_cents,
            "paid_in_cents": r.paid_in_cents,
            "owed_cents": r.owed_cents,
            "paid_out_cents": r.paid_out_cents,
            "held_cents": r.held_cents,
            "covered": r.covered,
        }
        for r in rows
        if who.role != Role.FUNDER or str(r.funder_id) == who.subject
    ]


@router.get("/statements/{statement_id}/payout")
async def payout_status(statement_id: uuid.UUID, rt: Rt, who: StatementReader) -> dict[str, Any]:
    """Whether the statement is paid in its window's SEPA file (payable, for its net), carried
    over (negative: what later statements of the site have settled of it so far, and what is
    outstanding), netted (wholly taken by earlier negative statements), or held."""
    row = await rt.pool.fetchrow(
        "SELECT window_id, site_id, total_cents FROM statements WHERE statement_id = $1", statement_id
    )
    if row is None or (who.role == Role.SITE and str(row["site_id"]) != who.subject):
        raise Problem(404, "unknown-statement", "Unknown statement", f"no statement {statement_id} for you")
    cov = await pg_store.coverage(rt.pool)
    # Not in the netting: nothing deducted, nothing owed (its site was never negative, or it was
    # issued between the two reads).
    netting = cov.netting.get(statement_id) or Netting(
        statement_id, row["window_id"], row["site_id"], row["total_cents"]
    )
    if row["total_cents"] <= 0:
        status = CARRIED_OVER
    elif statement_id in cov.held:
        status = HELD
    elif netting.net_cents == 0:
        status = NETTED
    else:
        status = "payable"
    return {
        "statement_id": str(statement_id),
        "total_cents": row["total_cents"],
        "status": status,
        "net_cents": netting.net_cents,
        "deductions": [
            {
                "settles_statement_id": str(d.settles),
                "window_id": d.settles_window_id,
                "amount_cents": d.amount_cents,
            }
            for d in netting.deductions
        ],
        "settled_by": [
            # held: the settling statement waits for the funders' payments, and its deduction with it
            {
                "statement_id": str(d.by),
                "window_id": d.by_window_id,
                "amount_cents": d.amount_cents,
                "held": d.by in cov.held,
            }
            for d in netting.settled_by
        ],
        "outstanding_cents": netting.outstanding_cents,
    }
