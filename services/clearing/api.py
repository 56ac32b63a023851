"""Clearing's HTTP API: statements, each reader seeing only what is theirs."""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from services.common.auth import Principal, Role, require
from services.common.problems import Problem
from services.common.runtime import Runtime

router = APIRouter(tags=["statements"])
Reader = Annotated[Principal, Depends(require(Role.SITE, Role.FINANCE, Role.AUDITOR, Role.SERVICE))]
FunderReader = Annotated[Principal, Depends(require(Role.FUNDER, Role.FINANCE, Role.AUDITOR))]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


@router.get("/statements")
async def list_statements(rt: Rt, who: Reader, window_id: int | None = None) -> list[dict[str, Any]]:
    """A site lists its own statements; finance and auditors list all."""
    site = UUID(who.subject) if who.role == Role.SITE else None
    rows = await rt.pool.fetch(
        "SELECT body FROM statements WHERE ($1::uuid IS NULL OR site_id = $1) "
        "AND ($2::int IS NULL OR window_id = $2) ORDER BY window_id, site_id",
        site,
        window_id,
    )
    return [json.loads(r["body"]) for r in rows]


@router.get("/statements/{statement_id}")
async def read_statement(statement_id: UUID, rt: Rt, who: Reader) -> dict[str, Any]:
    row = await rt.pool.fetchrow("SELECT site_id, body FROM statements WHERE statement_id = $1", statement_id)
    # Another site's statement is answered like a missing one: its existence is not revealed.
    if row is None or (who.role == Role.SITE and str(row["site_id"]) != who.subject):
        raise Problem(404, "unknown-statement", "Unknown statement", f"no statement {statement_id} for you")
    body: dict[str, Any] = json.loads(row["body"])
    return body


@router.get("/funder-statements")
async def list_funder_statements(
    rt: Rt, who: FunderReader, window_id: int | None = None
) -> list[dict[str, Any]]:
    """A funder lists only its own share of each window (its call for funds); finance all."""
    funder = UUID(who.subject) if who.role == Role.FUNDER else None
    rows = await rt.pool.fetch(
        "SELECT body FROM funder_statements WHERE ($1::uuid IS NULL OR funder_id = $1) "
        "AND ($2::int IS NULL OR window_id = $2) ORDER BY window_id, funder_id",
        funder,
        window_id,
    )
    return [json.loads(r["body"]) for r in rows]
