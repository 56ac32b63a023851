"""The faust-streaming app that feeds the ledgers from the redemptions topic.

One agent, concurrency 1 (faust #606: concurrency > 1 may commit an offset past an event still
in flight); clearing scales out by partitions and workers of the same consumer group.
Postgres is the ledger of record: no faust table holds a balance.

The agent receives whole fetches (services/clearing/faust_batches.py says why) and acks their
messages only after the batch's transaction committed: at-least-once, the processed-event record
making a redelivery a no-op.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import Message

from services.clearing.faust_batches import BatchingApp
from services.clearing.ledger import LedgerApplier, Prepared, prepare
from services.common import heap

# Records per fetch (one batch, one transaction) and fetched batches buffered ahead of the agent.
MAX_POLL_RECORDS = 5000
BUFFERED_BATCHES = 2


def build_app(*, app_id: str, bootstrap: str, redemptions_topic: str, applier: LedgerApplier) -> BatchingApp:
    app = BatchingApp(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=MAX_POLL_RECORDS,
        broker_commit_interval=0.5,
        broker_max_poll_records=MAX_POLL_RECORDS,
        consumer_max_fetch_size=4 * 1024**2,
        # A worker killed with SIGKILL holds its partitions until the group's session times out;
        # 10 s (not faust's 60 s) keeps a replacement worker from waiting a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    topic = app.topic(redemptions_topic, key_serializer="raw", value_serializer="raw")
    batches = app.batch_channel(topic, maxsize=BUFFERED_BATCHES)

    @app.agent(batches, concurrency=1)
    async def ledger(stream: Any) -> None:
        heap.freeze_startup_heap()
        # One batch in the database at a time, acked in order after its commit; the next batch
        # is read and decided (pure CPU) while the database works on this one.
        in_flight: asyncio.Future[None] | None = None
        try:
            async for fetched in stream:
                # In a thread: the batch in flight needs the event loop for its round trips
                # while this one is read (pure CPU; the GIL hands over every few ms).
                prepared = await asyncio.to_thread(prepare, fetched) if current(fetched) else None
                if in_flight is not None:
                    await in_flight
                # Checked again: a rebalance may have happened while the last batch committed.
                if prepared is not None and current(fetched):
                    in_flight = asyncio.ensure_future(apply_then_ack(prepared, fetched))
                # A skipped batch must not stay referenced (faust's wait_empty); `prepared` holds it too.
                del fetched, prepared
            if in_flight is not None:
                await in_flight
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()  # rolled back, not acked: redelivered, and applied once

    def current(fetched: list[Message]) -> bool:
        # A fetch is one generation: its first and last message say for all of it.
        return bool(fetched) and app.is_current(fetched[0]) and app.is_current(fetched[-1])

    async def apply_then_ack(prepared: Prepared, fetched: list[Message]) -> None:
        await applier.apply_with_retry(prepared)
        # Only now, after the commit, may faust commit these offsets.
        app.ack_batch(fetched)

    return app
