"""Events the models accept but the ledger's database refuses, on the real broker and database:
each goes to the dead-letter topic with its reason, the events around it are applied once, and
the stream goes on (before: the batch failed and was retried forever, stalling its partition)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from schemas.events import DeadLetterRecorded
from schemas.topics import TOPICS, Topic, topic_name
from services.common.kafka import ensure_topics
from tests.integration.helpers import eventually, read_topic, running
from tests.integration.produce import send
from tests.unit.factories import closed, redeemed, reversed_

pytestmark = pytest.mark.integration
SITE = uuid.UUID(int=8181)


@pytest.fixture(scope="module")
async def clearing(service_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from services.clearing.app import app

    ensure_topics(service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"])
    async with running(app) as client:
        yield client


def dead_letters(bootstrap: str, prefix: str) -> list[DeadLetterRecorded]:
    topic = topic_name(Topic.DEAD_LETTERS, prefix)
    return [
        DeadLetterRecorded.model_validate(e.payload)
        for _, _, e in read_topic(bootstrap, topic)
        if not isinstance(e, bytes) and e.type == DeadLetterRecorded.TYPE
    ]


async def test_values_beyond_the_ledgers_columns_are_dead_lettered_and_the_stream_goes_on(
    clearing: httpx.AsyncClient, service_env: dict[str, str], pg: asyncpg.Connection
) -> None:
    bootstrap, prefix = service_env["KAFKA_BOOTSTRAP_SERVERS"], service_env["KAFKA_TOPIC_PREFIX"]
    before = redeemed(1, SITE)
    refused = [
        # Beyond Postgres integer (window_id) and bigint (amount_cents): read by the models.
        redeemed(2, SITE, window=2**31),
        reversed_(redeemed(3, SITE).model_copy(update={"face_value_cents": 2**63}), 3, window=1),
        # In range for the hot path's checks, but year 0 once in UTC: refused by asyncpg's COPY.
        redeemed(4, SITE).model_copy(
            update={"accepted_at": datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))}
        ),
        # A marker of a window beyond the closed_partitions table's integer column.
        closed(1, 0, partitions=TOPICS[Topic.REDEMPTIONS].partitions).model_copy(
            update={"window_id": 2**31, "next_window_id": 2**31 + 1}
        ),
    ]
    after = [redeemed(n, SITE) for n in range(5, 15)]
    for event in [before, *refused, *after]:
        send(bootstrap, prefix, Topic.REDEMPTIONS, event, str(SITE), partition=0)

    async def applied() -> int | None:
        n: int = await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE site_id = $1", SITE)
        return n if n == 1 + len(after) else None

    await eventually("the events around the refused ones applied", applied, timeout=60)

    async def dead() -> list[DeadLetterRecorded] | None:
        found = dead_letters(bootstrap, prefix)
        return found if len(found) >= len(refused) else None

    letters = await eventually("the refused events dead-lettered", dead, timeout=30)
    assert sorted(d.source_offset for d in letters) == [1, 2, 3, 4]
    reasons = {d.source_offset: d.reason for d in letters}
    assert "window_id 2147483648 does not fit the ledger" in reasons[1]
    assert "face_value_cents 9223372036854775808 does not fit the ledger" in reasons[2]
    assert reasons[3].startswith("refused by the ledger's database: ")
    assert reasons[4].startswith("refused by the ledger's database: ")
    assert (
        await pg.fetchval(
            "SELECT coalesce(sum(amount_cents), 0) FROM clearing.ledger_lines WHERE site_id = $1", SITE
        )
        == 11 * 1000
    )
    assert await pg.fetchval("SELECT count(*) FROM clearing.closed_partitions") == 0

    # The stream goes on: a later event is applied too, and nothing is dead-lettered twice.
    send(bootstrap, prefix, Topic.REDEMPTIONS, redeemed(20, SITE), str(SITE), partition=0)

    async def later() -> bool:
        n = await pg.fetchval("SELECT count(*) FROM clearing.ledger_lines WHERE site_id = $1", SITE)
        return bool(n == 2 + len(after))

    await eventually("an event after them applied", later, timeout=30)
    assert len(dead_letters(bootstrap, prefix)) == len(refused)
