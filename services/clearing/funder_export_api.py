"""Calls for funds (funder statements) as documents: JSON, CSV and PDF. A funder reads only its
own; finance and auditors read all."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from schemas.events import FunderStatementIssued
from services.clearing import exports, pg_store
from services.clearing.api import Rt
from services.common.auth import Principal, Role, require
from services.common.problems import Problem
from services.common.runtime import Runtime

router = APIRouter(tags=["calls for funds"])
FunderReader = Annotated[Principal, Depends(require(Role.FUNDER, Role.FINANCE, Role.AUDITOR))]


@router.get("/funder-statements/{funder_statement_id}")
async def read_funder_statement(funder_statement_id: uuid.UUID, rt: Rt, who: FunderReader) -> dict[str, Any]:
    fs = await _readable(rt, who, funder_statement_id)
    body: dict[str, Any] = json.loads(fs.model_dump_json())
    return body


@router.get("/funder-statements/{funder_statement_id}/csv")
async def funder_statement_csv(funder_statement_id: uuid.UUID, rt: Rt, who: FunderReader) -> Response:
    """One row per site statement of the window: the funder's share in integer cents, in the order
    its digest covers them (the digest is in a header)."""
    fs = await _readable(rt, who, funder_statement_id)
    lines = await pg_store.funder_statement_lines(rt.pool, fs.window_id, fs.funder_id)
    return Response(
        exports.funder_statement_csv(fs, lines),
        media_type="text/csv; charset=utf-8",
        headers={
            **_attachment(f"appel-de-fonds-{fs.funder_statement_id}.csv"),
            "x-statement-digest": fs.digest,
        },
    )


@router.get("/funder-statements/{funder_statement_id}/pdf")
async def funder_statement_pdf(funder_statement_id: uuid.UUID, rt: Rt, who: FunderReader) -> Response:
    """The call for funds as a PDF: the funder, the window's dates, per programme, per site."""
    fs = await _readable(rt, who, funder_statement_id)
    lines = await pg_store.funder_statement_lines(rt.pool, fs.window_id, fs.funder_id)
    programmes = await pg_store.funder_programme_totals(rt.pool, fs.window_id, fs.funder_id)
    names = await pg_store.names(
        rt.pool,
        sites={line.site_id for line in lines},
        funders=[fs.funder_id],
        programmes=[p for p, _ in programmes],
    )
    pdf = exports.funder_statement_pdf(
        fs,
        lines,
        period=await pg_store.window_period(rt.pool, fs.window_id),
        programmes=programmes,
        names=names,
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            **_attachment(f"appel-de-fonds-{fs.funder_statement_id}.pdf"),
            "x-statement-digest": fs.digest,
        },
    )


async def _readable(rt: Runtime, who: Principal, funder_statement_id: uuid.UUID) -> FunderStatementIssued:
    row = await pg_store.funder_statement(rt.pool, funder_statement_id)
    # Another funder's call for funds is answered like a missing one: its existence is not revealed.
    if row is None or (who.role == Role.FUNDER and str(row["funder_id"]) != who.subject):
        raise Problem(
            404,
            "unknown-funder-statement",
            "Unknown call for funds",
            f"no call for funds {funder_statement_id} for you",
        )
    return FunderStatementIssued.model_validate_json(row["body"])


def _attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}
