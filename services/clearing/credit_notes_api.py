"""Credit notes: once per programme, after its last redemption day and once the redemptions up
to that day are cleared, the passes that can no longer be used go back to the funders: those the
issuer cancelled (lost, stolen) by a cancellation note, the others by the expiry note.

Cancelled passes are credited at the programme's end, not when cancelled: until then a
redemption accepted before the cancellation reached the redemption service, or a later reversal
of one, can still change whether the pass was used; at the end every such fact is final."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends

from schemas.events import CancellationCreditNoteIssued, ExpiryCreditNoteIssued, FunderShare
from schemas.topics import Topic
from services.clearing.api import Rt
from services.clearing.domain.credit_notes import CreditNotes, credit_notes, last_redemption_day
from services.common.auth import Principal, Role, require
from services.common.outbox import enqueue
from services.common.problems import Problem
from services.common.runtime import Runtime

router = APIRouter(tags=["credit notes"])
Finance = Annotated[Principal, Depends(require(Role.FINANCE))]
Reader = Annotated[Principal, Depends(require(Role.FUNDER, Role.FINANCE, Role.AUDITOR))]
EVENT_NS = uuid.UUID("a3c1f1e4-55d7-4c8b-9d0e-8f1b2c3d4e5f")


@router.post("/programmes/{programme_id}/expiry-credit-note")
async def issue_expiry_credit_note(programme_id: uuid.UUID, rt: Rt, who: Finance) -> dict[str, Any]:
    """Issue the programme's credit notes (see POST /programmes/{id}/credit-notes) and answer
    its expiry note, or the one already issued (idempotent)."""
    expiry: dict[str, Any] = (await _issue(rt, programme_id))["expiry"]
    return expiry


@router.post("/programmes/{programme_id}/credit-notes")
async def issue_credit_notes(programme_id: uuid.UUID, rt: Rt, who: Finance) -> dict[str, Any]:
    """Issue the programme's credit notes, or answer those already issued (idempotent): the
    expiry note (unused passes not cancelled) and, if any cancelled pass was never used, the
    cancellation note. Each unused pass is credited by exactly one of them."""
    return await _issue(rt, programme_id)


async def _issue(rt: Runtime, programme_id: uuid.UUID) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        # One at a time per programme: the second caller sees the first one's notes.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(programme_id))
        existing = await conn.fetch(
            "SELECT kind, body FROM credit_notes WHERE programme_id = $1", programme_id
        )
        if existing:
            found = {r["kind"]: json.loads(r["body"]) for r in existing}
            return {"expiry": found["expiry"], "cancellation": found.get("cancellation")}
        terms = await conn.fetchrow("SELECT * FROM programmes WHERE programme_id = $1", programme_id)
        if terms is None:
            raise Problem(404, "unknown-programme", "Unknown programme", f"no programme {programme_id}")
        last_day = last_redemption_day(terms["valid_until"], terms["grace_days"])
        end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
        if rt.clock.now() < end:
            raise Problem(
                409, "programme-still-valid", "Passes are still redeemable", f"until {last_day} included"
            )
        if not await _cleared_since(conn, end):
            raise Problem(
                409,
                "redemptions-not-cleared",
                "Redemptions up to the expiry are not all cleared",
                f"close a window after {end.isoformat()} and let clearing close it on every partition",
            )
        notes = credit_notes(
            programme_id,
            face_value_cents=terms["face_value_cents"],
            funders=tuple(FunderShare.model_validate(f) for f in json.loads(terms["funders"])),
            expired_after=last_day,
            issued=await _pass_ids(
                conn, "SELECT pass_id FROM issued_passes WHERE programme_id = $1", programme_id
            ),
            used=set(
                await _pass_ids(
                    conn,
                    "SELECT pass_id FROM ledger_lines WHERE programme_id = $1 GROUP BY pass_id "
                    "HAVING sum(amount_cents) > 0",
                    programme_id,
                )
            ),
            cancelled=set(
                await _pass_ids(
                    conn, "SELECT pass_id FROM cancelled_passes WHERE programme_id = $1", programme_id
                )
            ),
        )
        await _save_and_emit(rt, conn, notes)
    return {
        "expiry": notes.expiry.model_dump(mode="json"),
        "cancellation": notes.cancellation.model_dump(mode="json") if notes.cancellation else None,
    }


async def _pass_ids(conn: asyncpg.Connection, query: str, programme_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["pass_id"] for r in await conn.fetch(query, programme_id)]


@router.get("/credit-notes")
async def list_credit_notes(rt: Rt, who: Reader) -> list[dict[str, Any]]:
    """Finance and auditors see every note; a funder the notes that credit it. `kind` says
    whether a note credits expired passes or cancelled ones."""
    rows = await rt.pool.fetch("SELECT kind, body FROM credit_notes ORDER BY programme_id, kind DESC")
    notes = [{"kind": r["kind"], **json.loads(r["body"])} for r in rows]
    if who.role == Role.FUNDER:
        notes = [n for n in notes if any(f["funder_id"] == who.subject for f in n["funder_amounts"])]
    return notes


async def _cleared_since(conn: asyncpg.Connection, moment: datetime) -> bool:
    """A window closed after `moment` is closed in clearing on every partition: every redemption
    (and reversal) stamped before it has been applied to the ledgers."""
    return bool(
        await conn.fetchval(
            "SELECT true FROM closed_partitions WHERE closed_at >= $1 GROUP BY window_id "
            "HAVING count(*) = max(partition_count) LIMIT 1",
            moment,
        )
    )


async def _save_and_emit(rt: Runtime, conn: asyncpg.Connection, notes: CreditNotes) -> None:
    issued: list[tuple[str, ExpiryCreditNoteIssued | CancellationCreditNoteIssued]] = [
        ("expiry", notes.expiry)
    ]
    if notes.cancellation is not None:
        issued.append(("cancellation", notes.cancellation))
    for kind, note in issued:
        await conn.execute(
            "INSERT INTO credit_notes (programme_id, kind, credit_note_id, total_cents, body) "
            "VALUES ($1, $2, $3, $4, $5)",
            note.programme_id,
            kind,
            note.credit_note_id,
            note.total_cents,
            note.model_dump_json(),
        )
        envelope = rt.events.envelope(note, key=str(note.programme_id)).model_copy(
            update={"event_id": uuid.uuid5(EVENT_NS, f"{note.TYPE}:{note.credit_note_id}")}
        )
        await enqueue(conn, rt.topic(Topic.CLEARING), envelope)
