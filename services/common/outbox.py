"""Transactional outbox and its relay to Kafka.

`enqueue` is called inside the transaction that changes state, so the event exists exactly when
the change does, and is pending from then (`outbox_pending`, filled by a trigger on the outbox).
The relay publishes the pending rows in `seq` order with an idempotent producer (acks=all) and
takes them off `outbox_pending` only after the broker acknowledged them: a crash in between
publishes them again with the same event id, which consumers drop (invariant 4). Once a second,
the relay deletes the published rows older than the outbox's retention (`OutboxSettings`; by
default none is kept): the topics keep every event, and a pruned outbox reuses its pages.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog
from kafka import KafkaProducer

from schemas.envelope import Envelope
from services.common import metrics
from services.common.settings import OutboxSettings

log = structlog.get_logger()


async def enqueue(
    conn: asyncpg.Connection, topic: str, envelope: Envelope, *, partition: int | None = None
) -> None:
    # Deterministic event ids (statements, dead letters) may be enqueued twice by a redelivery:
    # while the outbox holds the first row (its retention) the second is dropped here; later,
    # consumers drop it by its id (invariant 4).
    await conn.execute(
        "INSERT INTO outbox (event_id, topic, key, partition, body) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (event_id) DO NOTHING",
        envelope.event_id,
        topic,
        envelope.key,
        partition,
        envelope.to_bytes(),
    )


# The relay's read: the first pending seqs, then their rows by the outbox's primary key, so a read
# costs what it returns, whatever the outbox holds. It was a join (`outbox_pending JOIN outbox
# ... ORDER BY seq LIMIT n`), for which the planner may choose a merge join that walks the outbox's
# index from its first row, every event ever published (the outbox then kept them all): measured in
# the P1 bench, 30 s into the run, 89,266 outbox rows and 25,205 buffers read for 355 pending rows,
# 89 ms a read, growing with every event. One plan, whatever the statistics say.
PENDING_ROWS_SQL = (
    "SELECT seq, topic, key, partition, body FROM outbox "
    "WHERE seq = ANY (ARRAY(SELECT seq FROM outbox_pending ORDER BY seq LIMIT $1)) ORDER BY seq"
)

# The relay's pruning: the oldest published rows, by the primary key (every seq below the first
# pending one is published; a row not yet committed is invisible here, so it is neither pending nor
# deleted), deleted if older than the retention. It reads at most $2 index entries whatever the
# outbox holds: with a retention, the oldest rows are the first to be old enough (`created_at` is
# the enqueuing transaction's start, in seq order but for transactions that overlap), so a prune
# that finds the oldest row too young deletes nothing and reads on no further.
PRUNE_SQL = """
DELETE FROM outbox
 WHERE seq = ANY (ARRAY(
           SELECT seq FROM outbox
            WHERE seq < coalesce((SELECT min(seq) FROM outbox_pending), 9223372036854775807)
            ORDER BY seq LIMIT $2))
   AND created_at <= now() - make_interval(secs => $1)
"""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    topic: str
    key: str
    partition: int | None
    body: bytes


class OutboxRelay:
    """Publishes one schema's outbox. One relay per schema holds an advisory lock, so replicas
    of a service never publish the same outbox concurrently (which would break outbox order)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: KafkaProducer | None,
        *,
        schema: str,
        batch_size: int = 2000,
        idle_seconds: float = 0.02,
        idle_max_seconds: float = 0.16,
        linger_seconds: float = 0.0,
        retention_seconds: float | None = None,
        prune_every_seconds: float = 1.0,
        prune_batch: int = 20_000,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._schema = schema
        self._batch_size = batch_size
        # After an empty read, wait idle_seconds; after each further empty read twice as long, up to
        # idle_max_seconds: an idle relay polls ~6 times a second instead of 50 (four services'
        # relays were ~200 queries a second on an idle database, and in the P1 bench the idle
        # issuer's and clearing's relays took CPU from the redemptions). A first event after a
        # quiet spell reaches Kafka at most idle_max_seconds later.
        self._idle_seconds = idle_seconds
        self._idle_max_seconds = max(idle_max_seconds, idle_seconds)
        # After a batch smaller than batch_size (no backlog), wait this long before the next read,
        # so a steady stream goes out in fewer, bigger batches (fewer reads, commits, produce requests).
        self._linger_seconds = linger_seconds
        # Published rows older than retention_seconds are deleted every prune_every_seconds, at
        # most prune_batch at a time (every 0.1 s while a prune finds a full batch).
        self._retention_seconds = (
            OutboxSettings().retention_seconds if retention_seconds is None else retention_seconds
        )
        self._prune_every_seconds = prune_every_seconds
        self._prune_batch = prune_batch

    async def run(self, stop: asyncio.Event) -> None:
        async with self._pool.acquire() as lock_conn:
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id()):
                if await _wait(stop, 1.0):
                    return
            log.info("outbox relay started", schema=self._schema)
            idle = self._idle_seconds
            next_prune = time.monotonic() + self._prune_every_seconds
            while not stop.is_set():
                try:
                    published = await self.publish_once(lock_conn)
                    if time.monotonic() >= next_prune:
                        pruned = await self.prune_once(lock_conn)
                        # A backlog of old rows (say, an outbox kept whole by a previous version)
                        # goes a full batch every 0.1 s, between the publishing.
                        full = pruned >= self._prune_batch
                        next_prune = time.monotonic() + (0.1 if full else self._prune_every_seconds)
                except Exception:
                    if lock_conn.is_closed():
                        raise  # and the lock went with it: start again (Runtime._guard), lock first
                    log.exception("outbox relay failed; retrying", schema=self._schema)
                    published = 0
                    if await _wait(stop, 1.0):
                        break
                if published == 0:
                    pause, idle = idle, min(idle * 2, self._idle_max_seconds)
                else:
                    idle = self._idle_seconds
                    if published >= self._batch_size:
                        continue  # a backlog: read on at once
                    pause = self._linger_seconds
                if pause and await _wait(stop, pause):
                    break
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", self._lock_id())

    async def publish_once(self, conn: asyncpg.Connection | None = None) -> int:
        """Publish the next batch; returns how many rows it published.

        `run` passes the connection that holds the relay's lock: the rows are read and marked on
        it, so only the lock's holder ever publishes (were that connection lost, the lock would go
        with it and the relay starts again), and a batch costs no pool round trips (each release
        resets the connection, one more statement; at 3,000 redemptions/s the relay runs about a
        hundred batches a second, and an idle relay polls fifty times a second)."""
        if conn is None:
            async with self._pool.acquire() as acquired:
                return await self._publish(acquired)
        return await self._publish(conn)

    async def prune_once(self, conn: asyncpg.Connection | None = None) -> int:
        """Delete up to `prune_batch` published rows older than the retention, oldest first;
        returns how many it deleted. `run` calls it on the lock's connection, once a second."""
        if conn is None:
            async with self._pool.acquire() as acquired:
                return await self.prune_once(acquired)
        status = await conn.execute(PRUNE_SQL, self._retention_seconds, self._prune_batch)
        pruned = int(status.rsplit(" ", 1)[1])  # "DELETE n"
        if pruned:
            metrics.EVENTS_PRUNED.labels(self._schema).inc(pruned)
        return pruned

    async def _publish(self, conn: asyncpg.Connection) -> int:
        rows = await self._fetch(conn)
        if not rows:
            metrics.OUTBOX_LAG.labels(self._schema).set(0)
            return 0
        await self._send(rows)
        await conn.execute("DELETE FROM outbox_pending WHERE seq = ANY($1::bigint[])", [r.seq for r in rows])
        metrics.EVENTS_OUT.labels(self._schema).inc(len(rows))
        metrics.OUTBOX_LAG.labels(self._schema).set(len(rows) if len(rows) == self._batch_size else 0)
        return len(rows)

    async def _fetch(self, conn: asyncpg.Connection) -> list[OutboxRow]:
        records = await conn.fetch(PENDING_ROWS_SQL, self._batch_size)
        # Positional (the SELECT lists the fields in OutboxRow's order): `OutboxRow(**dict(r))` took
        # 71 ms for 20,000 rows, time the relay holds its event loop.
        return [OutboxRow(*r) for r in records]

    async def _send(self, rows: list[OutboxRow]) -> None:
        """Publish `rows` in outbox order; returns once the broker acknowledged all of them."""
        await asyncio.to_thread(self._send_all, rows)

    def _send_all(self, rows: list[OutboxRow]) -> None:
        assert self._producer is not None, "this relay publishes with kafka-python's producer"
        futures = [
            self._producer.send(r.topic, key=r.key.encode(), value=r.body, partition=r.partition)
            for r in rows
        ]
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge

    def _lock_id(self) -> int:
        return zlib.crc32(f"outbox-relay:{self._schema}".encode())


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when asked to stop."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def enqueue_many(conn: asyncpg.Connection, topic: str, envelopes: list[Envelope]) -> None:
    """`enqueue` for a batch (e.g. the thousands of booklets of an order) in one pipelined call."""
    await enqueue_encoded(conn, topic, [(e.event_id, e.key, e.to_bytes()) for e in envelopes])


async def enqueue_encoded(conn: asyncpg.Connection, topic: str, rows: list[tuple[UUID, str, bytes]]) -> None:
    """`enqueue_many` for envelopes already encoded: (event id, key, the envelope's JSON)."""
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, partition, body) VALUES ($1, $2, $3, NULL, $4) "
        "ON CONFLICT (event_id) DO NOTHING",
        [(event_id, topic, key, body) for event_id, key, body in rows],
    )
