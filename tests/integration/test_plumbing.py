"""Outbox, relay, processed-event record, dead letters and migrations, on the real parts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from schemas.events import FunderRegistered, SiteRegistered
from schemas.topics import Topic, topic_name
from services.common.db import PLUMBING_SQL, create_pool, migrate
from services.common.events import EventFactory
from services.common.kafka import EventConsumer, Handler, delete_topics, ensure_topics, make_producer
from services.common.outbox import PENDING_ROWS_SQL, OutboxRelay, enqueue
from services.common.ports import RandomIds, SystemClock
from tests.integration.helpers import eventually, read_topic

pytestmark = pytest.mark.integration
SERVICES = Path(__file__).parents[2] / "services"
EVENTS = EventFactory("test", SystemClock(), RandomIds())


@pytest.fixture(scope="module")
def topics(bootstrap: str, topic_prefix: str) -> str:
    ensure_topics(bootstrap, topic_prefix)
    return topic_prefix


@pytest.mark.parametrize("service", ["issuer", "redemption", "clearing", "notifier"])
async def test_every_migration_applies_from_empty_and_only_once(database_url: str, service: str) -> None:
    pool = await create_pool(database_url, f"stairs_{service}")
    try:
        applied = await migrate(pool, f"stairs_{service}", SERVICES / service / "migrations")
        assert applied[0] == "000_plumbing.sql" and len(applied) >= 2
        assert await migrate(pool, f"stairs_{service}", SERVICES / service / "migrations") == []
    finally:
        await pool.close()


def test_delete_topics_removes_a_prefix_s_topics_and_only_those(bootstrap: str, topics: str) -> None:
    prefix = f"gone-{uuid.uuid4().hex[:8]}."
    created = ensure_topics(bootstrap, prefix)
    assert created and all(name.startswith(prefix) for name in created)
    assert sorted(delete_topics(bootstrap, prefix)) == sorted(created)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        left = set(admin.list_topics())
    finally:
        admin.close()
    assert not any(name.startswith(prefix) for name in left)
    assert topic_name(Topic.ISSUER, topics) in left  # another prefix's topics stay


@pytest.fixture
async def pool(database_url: str) -> asyncpg.Pool:
    schema = f"s{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    await migrate(pool, schema, SERVICES / "issuer" / "migrations")
    yield pool
    await pool.close()


def funder_event(n: int):  # type: ignore[no-untyped-def]
    return EVENTS.envelope(
        FunderRegistered(funder_id=uuid.uuid4(), name=f"Funder {n}", kind="region"), key="k"
    )


async def test_relay_publishes_committed_events_in_outbox_order_and_never_rolled_back_ones(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    topic = topic_name(Topic.ISSUER, topics)
    before = len(read_topic(bootstrap, topic))
    sent = [funder_event(n) for n in range(50)]
    async with pool.acquire() as conn:
        async with conn.transaction():
            for e in sent:
                await enqueue(conn, topic, e)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, topic, funder_event(99))
                raise RuntimeError("the state change failed: its event must not exist")
    producer = make_producer(bootstrap)
    relay = OutboxRelay(pool, producer, schema="test")
    assert await relay.publish_once() == 50
    assert await relay.publish_once() == 0
    producer.close()
    published = [e.event_id for _, _, e in read_topic(bootstrap, topic)[before:]]
    assert published == [e.event_id for e in sent]


async def test_an_event_enqueued_again_after_it_was_published_is_not_published_again(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """Deterministic ids (statements, dead letters) may be enqueued again by a redelivery, even
    after the first was published: while the outbox holds the first (its retention), the second is
    a no-op."""
    topic = topic_name(Topic.ISSUER, topics)
    event = funder_event(7)
    producer = make_producer(bootstrap)
    relay = OutboxRelay(pool, producer, schema="again")
    async with pool.acquire() as conn:
        await enqueue(conn, topic, event)
    assert await relay.publish_once() == 1
    async with pool.acquire() as conn:
        await enqueue(conn, topic, event)
    assert await relay.publish_once() == 0
    producer.close()
    assert [e.event_id for _, _, e in read_topic(bootstrap, topic)].count(event.event_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0


async def test_every_row_the_outbox_takes_is_pending_whoever_inserts_it(pool: asyncpg.Pool) -> None:
    """The trigger, not the callers, keeps outbox_pending: a plain INSERT (as the previous version
    of a service, still running during an upgrade, writes it) is pending in its transaction, a row
    skipped by ON CONFLICT is not pending twice, and a rolled-back one is not pending at all."""
    events = [funder_event(n) for n in range(3)]
    insert = "INSERT INTO outbox (event_id, topic, key, body) VALUES ($1, 't', $2, $3) ON CONFLICT (event_id) DO NOTHING"
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.executemany(insert, [(e.event_id, e.key, e.to_bytes()) for e in events[:2]])
            await conn.execute(insert, events[0].event_id, events[0].key, events[0].to_bytes())
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute(insert, events[2].event_id, events[2].key, events[2].to_bytes())
                raise RuntimeError("rolled back")
        pending = await conn.fetch(
            "SELECT o.event_id FROM outbox_pending p JOIN outbox o USING (seq) ORDER BY p.seq"
        )
    assert [r["event_id"] for r in pending] == [e.event_id for e in events[:2]]


async def test_the_relay_reads_only_the_pending_rows_however_many_the_outbox_holds(
    pool: asyncpg.Pool,
) -> None:
    """Published rows stay for the outbox's retention (an hour, a day); the relay's read must not
    walk them. The
    statistics are those of a young outbox (analyzed when it held 3,000 rows, all pending), as
    autoanalyze left them in the P1 bench, when the planner merge-joined pending rows with the
    whole outbox index; then 30,000 rows are published and 300 more enqueued."""
    insert = (
        "INSERT INTO outbox (event_id, topic, key, body) "
        "SELECT gen_random_uuid(), 't', 'k', convert_to(repeat('x', 700), 'UTF8') FROM generate_series(1, $1)"
    )
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE outbox SET (autovacuum_enabled = false)")
        await conn.execute("ALTER TABLE outbox_pending SET (autovacuum_enabled = false)")
        await conn.execute(insert, 3000)
        await conn.execute("ANALYZE outbox")
        await conn.execute("ANALYZE outbox_pending")
        await conn.execute(insert, 30_000)
        await conn.execute("DELETE FROM outbox_pending")  # all published
        await conn.execute(insert, 300)
        plan = json.loads(
            await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {PENDING_ROWS_SQL}", 20_000)
        )[0]
    read = sum(
        n["Actual Rows"] * n["Actual Loops"]
        for n in _nodes(plan["Plan"])
        if n.get("Relation Name") == "outbox"
    )
    assert read == 300, f"the relay read {read:.0f} outbox rows to publish 300"


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_an_outbox_upgraded_with_unpublished_rows_publishes_exactly_those(
    database_url: str, bootstrap: str, topics: str, tmp_path: Path
) -> None:
    """Migration 000_plumbing_2 on an outbox the previous relay had partly published (published_at
    set on some rows): the others become pending, and the relay publishes them and only them."""
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    topic = topic_name(Topic.ISSUER, topics)
    events = [funder_event(n) for n in range(5)]
    pool = await create_pool(database_url, schema)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            await conn.execute((PLUMBING_SQL / "000_plumbing.sql").read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ('000_plumbing.sql')")
            await conn.executemany(
                "INSERT INTO outbox (event_id, topic, key, body, published_at) VALUES ($1, $2, $3, $4, $5)",
                [
                    (e.event_id, topic, e.key, e.to_bytes(), None if n >= 3 else datetime.now(UTC))
                    for n, e in enumerate(events)
                ],
            )
        (tmp_path / "service").mkdir()
        assert await migrate(pool, schema, tmp_path / "service") == [
            "000_plumbing_2_outbox_pending.sql",
            "000_plumbing_3_outbox_queue.sql",
            "000_plumbing_4_sampled_statistics.sql",
        ]
        before = len(read_topic(bootstrap, topic))
        producer = make_producer(bootstrap)
        assert await OutboxRelay(pool, producer, schema=schema).publish_once() == 2
        producer.close()
        assert [e.event_id for _, _, e in read_topic(bootstrap, topic)[before:]] == [
            e.event_id for e in events[3:]
        ]
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 5  # within the retention
    finally:
        await pool.close()


async def _enqueue(pool: asyncpg.Pool, topic: str, events: list[Any]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for e in events:
            await enqueue(conn, topic, e)


async def _outbox(pool: asyncpg.Pool) -> list[uuid.UUID]:
    return [r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox ORDER BY seq")]


async def test_the_relay_prunes_published_rows_past_the_retention_and_never_a_pending_one(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """With no retention (the default), a prune deletes every published row and no pending one,
    however old; with a retention, only the published rows older than it."""
    topic = topic_name(Topic.ISSUER, topics)
    published, pending = [funder_event(n) for n in range(10)], [funder_event(n) for n in range(10, 13)]
    producer = make_producer(bootstrap)
    try:
        relay = OutboxRelay(pool, producer, schema="prune", retention_seconds=0)
        await _enqueue(pool, topic, published)
        assert await relay.publish_once() == 10
        await _enqueue(pool, topic, pending)
        await pool.execute("UPDATE outbox SET created_at = created_at - interval '1 day'")  # all old
        assert await relay.prune_once() == 10
        assert await _outbox(pool) == [e.event_id for e in pending]
        assert await relay.publish_once() == 3  # the pending rows were all still there
        assert await relay.prune_once() == 3 and await _outbox(pool) == []

        kept = OutboxRelay(pool, producer, schema="prune", retention_seconds=3600)
        events = [funder_event(n) for n in range(6)]
        await _enqueue(pool, topic, events)
        assert await kept.publish_once() == 6
        assert await kept.prune_once() == 0  # all younger than an hour
        await pool.execute(
            "UPDATE outbox SET created_at = created_at - interval '2 hours' WHERE event_id = ANY($1)",
            [e.event_id for e in events[:4]],
        )
        assert await kept.prune_once() == 4
        assert await _outbox(pool) == [e.event_id for e in events[4:]]
    finally:
        producer.close()
    assert [e.event_id for _, _, e in read_topic(bootstrap, topic)].count(pending[0].event_id) == 1


async def test_a_running_relay_prunes_as_it_publishes_and_the_topic_gets_every_event_once(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """Eight writers enqueue 400 events in small transactions while the relay runs with no
    retention, pruning every 50 ms: the topic gets each event once, in each writer's order, and the
    outbox ends empty."""
    topic = topic_name(Topic.ISSUER, topics)
    before = len(read_topic(bootstrap, topic))
    writers = [[funder_event(n) for n in range(50)] for _ in range(8)]
    producer = make_producer(bootstrap)
    stop = asyncio.Event()
    relay = OutboxRelay(pool, producer, schema="prune-loop", retention_seconds=0, prune_every_seconds=0.05)
    task = asyncio.create_task(relay.run(stop))

    async def write(events: list[Any]) -> None:
        for i in range(0, len(events), 5):
            await _enqueue(pool, topic, events[i : i + 5])
            await asyncio.sleep(0.005)

    await asyncio.gather(*(write(w) for w in writers))

    async def emptied() -> bool:
        return not await _outbox(pool)

    await eventually("the relay to publish and prune everything", emptied)
    stop.set()
    await task
    producer.close()
    sent = [e.event_id for _, _, e in read_topic(bootstrap, topic)[before:]]
    assert sorted(sent) == sorted(e.event_id for w in writers for e in w)  # each once
    for w in writers:
        mine = {e.event_id for e in w}
        assert [i for i in sent if i in mine] == [e.event_id for e in w]


async def test_a_pruned_and_vacuumed_outbox_takes_new_events_in_its_freed_pages(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """Why the outbox is pruned: once vacuumed, the pages of pruned events take the next ones, and
    the table does not grow."""
    topic = topic_name(Topic.ISSUER, topics)
    producer = make_producer(bootstrap)
    relay = OutboxRelay(pool, producer, schema="reuse", retention_seconds=0)
    try:
        await _enqueue(pool, topic, [funder_event(n) for n in range(2000)])
        assert await relay.publish_once() == 2000 and await relay.prune_once() == 2000
        size = await pool.fetchval("SELECT pg_relation_size('outbox')")
        await pool.execute("VACUUM outbox")
        await _enqueue(pool, topic, [funder_event(n) for n in range(2000)])
        assert await pool.fetchval("SELECT pg_relation_size('outbox')") <= size
        assert await relay.publish_once() == 2000
    finally:
        producer.close()


async def test_a_poison_message_redelivered_after_the_outbox_was_pruned_is_dead_lettered_once(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """The dead letter's deterministic id is recorded as processed: a redelivery (a crash before
    the offset commit) does not dead-letter it again, even once the outbox no longer holds it."""
    topic = topic_name(Topic.ISSUER, topics)
    consumer = issuer_consumer("c-pruned", pool, bootstrap, topics, _ignore)
    poison = _Message(topic, 0, 12, b"{not json")
    await consumer.apply(poison)
    assert await _dead_letters(pool) == 1
    producer = make_producer(bootstrap)
    try:
        relay = OutboxRelay(pool, producer, schema="dead-pruned", retention_seconds=0)
        assert await relay.publish_once() == 1 and await relay.prune_once() == 1
    finally:
        producer.close()
    await consumer.apply(poison)
    assert await _dead_letters(pool) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0


async def _ignore(conn: asyncpg.Connection, envelope: Any, payload: Any) -> None:
    return None


async def test_relay_run_loop_publishes_what_is_enqueued_later(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    topic = topic_name(Topic.ISSUER, topics)
    producer = make_producer(bootstrap)
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxRelay(pool, producer, schema="loop").run(stop))
    await _enqueue_one_and_see_it_published(pool, bootstrap, topic)
    stop.set()
    await task
    producer.close()


async def test_a_relay_that_loses_its_lock_connection_stops_rather_than_publish_without_the_lock(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """The relay reads and marks rows on the connection that holds its advisory lock: were that
    connection lost, the lock went with it (another replica may hold it now), so the relay must
    stop (Runtime._guard starts it again, lock first), not go on publishing from the pool."""
    topic = topic_name(Topic.ISSUER, topics)
    producer = make_producer(bootstrap)
    relay = OutboxRelay(pool, producer, schema="lost")
    task = asyncio.create_task(relay.run(asyncio.Event()))
    await _enqueue_one_and_see_it_published(pool, bootstrap, topic)
    holder = await pool.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid::bigint = $1",
        relay._lock_id(),
    )
    await pool.execute("SELECT pg_terminate_backend($1)", holder)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
        await asyncio.wait_for(task, 10)
    producer.close()


async def test_a_consumer_applies_each_event_once_and_dead_letters_poison(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    topic = topic_name(Topic.ISSUER, topics)
    site = EVENTS.envelope(
        SiteRegistered(site_id=uuid.uuid4(), name="Fablab", siret="73282932000074"), key="s"
    )
    publish(
        bootstrap, topic, [site.to_bytes(), b"{not json", site.to_bytes()]
    )  # the duplicate is a republish

    applied: list[uuid.UUID] = []

    async def handler(conn: asyncpg.Connection, envelope, payload) -> None:  # type: ignore[no-untyped-def]
        if isinstance(payload, SiteRegistered):
            applied.append(payload.site_id)

    consumer = issuer_consumer("c1", pool, bootstrap, topics, handler)
    async with consuming(consumer):
        await eventually("the poison message to be dead-lettered", lambda: _dead_letters(pool))
        await eventually("the stream to go on past it", lambda: _processed(pool, "c1"))
    # The same message delivered once more (a crash before the offset commit): nothing changes.
    await consumer.apply(_Message(topic, 0, 99, site.to_bytes()))
    assert applied == [site.payload["site_id"] and uuid.UUID(site.payload["site_id"])]
    reason = await pool.fetchval(
        "SELECT convert_from(body, 'UTF8') FROM outbox WHERE topic LIKE '%dead-letters'"
    )
    assert "unreadable event" in reason


async def test_a_stop_while_an_event_is_retried_leaves_its_offset_uncommitted(
    pool: asyncpg.Pool, bootstrap: str, topics: str
) -> None:
    """The database is down (the handler fails) when the service stops: the event it was
    retrying must come again at the next start, not be skipped by an offset commit."""
    topic = topic_name(Topic.ISSUER, topics)
    event = funder_event(7)
    publish(bootstrap, topic, [event.to_bytes()])
    attempts: list[uuid.UUID] = []
    applied: list[uuid.UUID] = []

    async def failing(conn: asyncpg.Connection, envelope, payload) -> None:  # type: ignore[no-untyped-def]
        attempts.append(envelope.event_id)
        raise ConnectionError("database unreachable")

    async def working(conn: asyncpg.Connection, envelope, payload) -> None:  # type: ignore[no-untyped-def]
        applied.append(envelope.event_id)

    async def retried() -> bool:
        return len(attempts) >= 2

    async with consuming(issuer_consumer("c-stop", pool, bootstrap, topics, failing)):
        await eventually("the failing event to be retried", retried)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        group = f"{topics}c-stop"
        assert not admin.list_group_offsets(group).get(group), (
            "the offset of an unapplied event was committed"
        )
    finally:
        admin.close()

    async def redelivered() -> bool:
        return event.event_id in applied

    async with consuming(issuer_consumer("c-stop", pool, bootstrap, topics, working)):
        await eventually("the event to be applied after the restart", redelivered)


def publish(bootstrap: str, topic: str, records: list[bytes]) -> None:
    """Raw records, in order, on one key (so one partition)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for raw in records:
        producer.send(topic, raw, key=b"k")
    producer.flush()
    producer.close()


def issuer_consumer(
    name: str, pool: asyncpg.Pool, bootstrap: str, topics: str, handler: Handler
) -> EventConsumer:
    """Consumer group `name` over this module's issuer topic."""
    return EventConsumer(
        name=name,
        topics=[topic_name(Topic.ISSUER, topics)],
        bootstrap=bootstrap,
        pool=pool,
        handler=handler,
        events=EVENTS,
        topic_prefix=topics,
    )


@asynccontextmanager
async def consuming(consumer: EventConsumer) -> AsyncIterator[None]:
    """The consumer's loop runs inside the block; leaving it stops the loop and waits for it."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


class _Message:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, partition, offset, value


async def _processed(pool: asyncpg.Pool, consumer: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = $1", consumer))


async def _dead_letters(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE '%dead-letters'"))


async def _enqueue_one_and_see_it_published(pool: asyncpg.Pool, bootstrap: str, topic: str) -> None:
    event = funder_event(1)
    async with pool.acquire() as conn:
        await enqueue(conn, topic, event)

    async def published() -> bool:
        return any(e.event_id == event.event_id for _, _, e in read_topic(bootstrap, topic))

    await eventually("the relay to publish", published)
