"""Closing a window on the real database: the statements and outbox rows are the bytes the first
implementation of the core gave, and the lines are read whole site by whole site."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest

from schemas.envelope import Envelope
from schemas.events import FunderShare, PassRedeemed
from schemas.topics import Topic
from services.clearing import pg_store
from services.clearing.app import MIGRATIONS
from services.clearing.domain import statements as core
from services.clearing.ledger import LedgerApplier
from services.common.dead_letters import Incoming
from services.common.runtime import Runtime
from tests.unit import reference_statements as reference
from tests.unit.factories import STATE, closed, envelope, redeemed, reversed_

pytestmark = pytest.mark.integration
SITES = [uuid.UUID(int=(7 - i) << 100 | i) for i in range(7)]  # not in insertion order


@pytest.fixture(scope="module")
async def runtime(service_env: dict[str, str]) -> AsyncIterator[Runtime]:
    rt = await Runtime.start("clearing", MIGRATIONS)
    yield rt
    await rt.close()


def varied() -> list[PassRedeemed]:
    """Seven sites, a second programme, sub-second times, ties on the time."""
    events = []
    for n in range(60):
        r = redeemed(n, SITES[(n + n // 9) % 7], cents=1000 + 7 * (n % 5))
        if n % 4 == 0:
            only_state = (FunderShare(funder_id=STATE, share_bp=10_000),)
            r = r.model_copy(update={"programme_id": uuid.UUID(int=101), "funders": only_state})
        if n % 3 == 1:
            r = r.model_copy(update={"accepted_at": r.accepted_at + timedelta(microseconds=500 * n)})
        if n % 7 == 0:
            r = r.model_copy(update={"accepted_at": events[0].accepted_at if events else r.accepted_at})
        events.append(r)
    return events


async def test_a_close_stores_and_emits_the_first_implementation_s_bytes(runtime: Runtime, pg) -> None:  # type: ignore[no-untyped-def]
    events = varied()
    payloads = [*events, *(reversed_(e, n, window=1) for n, e in enumerate(events[::9]))]
    marker = closed(1, 0, partitions=1)
    batch = [
        Incoming(runtime.topic(Topic.REDEMPTIONS), 0, n, envelope(p, n).to_bytes())
        for n, p in enumerate([*payloads, marker])
    ]
    await LedgerApplier(runtime).apply(batch)

    lines = [core.ledger_line(p) for p in payloads]
    expected = [
        reference.statement(s, marker, [x for x in lines if x.site_id == s]) for s in sorted(SITES, key=str)
    ]
    rows = await pg.fetch("SELECT body, expected_payout_date FROM clearing.statements ORDER BY site_id")
    assert [orjson.loads(r["body"]) for r in rows] == [st.model_dump(mode="json") for st in expected]
    assert {r["expected_payout_date"] for r in rows} == {expected[0].expected_payout_date}
    outbox = [bytes(r["body"]) for r in await pg.fetch("SELECT body FROM clearing.outbox ORDER BY seq")]
    bodies = [b for b in outbox if orjson.loads(b)["type"] == "StatementIssued"]
    assert [orjson.loads(b)["payload"] for b in bodies] == [st.model_dump(mode="json") for st in expected]
    for body, st in zip(bodies, expected, strict=True):
        assert body == reference.envelope_bytes(Envelope.model_validate_json(body), st)
    parts = await pg.fetch(
        "SELECT site_id, programme_id, funder_id, amount_cents FROM clearing.statement_parts ORDER BY site_id"
    )
    assert sorted(
        (r["site_id"], r["programme_id"], r["funder_id"], r["amount_cents"]) for r in parts
    ) == sorted(
        (st.site_id, p.programme_id, p.funder_id, p.amount_cents)
        for st in expected
        for p in reference.funder_parts(reference.ordered([x for x in lines if x.site_id == st.site_id]))
    )


async def test_the_lines_come_whole_site_by_whole_site_in_site_order(runtime: Runtime) -> None:
    lines = [
        dataclasses.replace(core.ledger_line(e), ref_id=uuid.UUID(int=1 << 120 | n), window_id=9)
        for n, e in enumerate(varied())
    ]
    async with runtime.pool.acquire() as conn, conn.transaction():
        await pg_store.add_lines(conn, [(line, 3) for line in lines])
        chunks = [c async for c in pg_store.window_lines(conn, 9, 3, rows=4)]
    assert len(chunks) > 3
    sites = [line.site_id for chunk in chunks for line in chunk]
    assert sites == sorted(sites) and sorted(sites) == sorted(str(line.site_id) for line in lines)
    for a, b in itertools.pairwise(chunks):
        assert a[-1].site_id < b[0].site_id  # no site is cut in two
    assert sorted(line for chunk in chunks for line in chunk) == sorted(core.line_of(line) for line in lines)
