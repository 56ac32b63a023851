"""The faust-streaming app that feeds the ledgers from the redemptions topic.

One agent, concurrency 1 (faust #606: concurrency > 1 may commit an offset past an event still
in flight); clearing scales out by partitions and workers of the same consumer group.
Postgres is the ledger of record: no faust table holds a balance.
"""

from __future__ import annotations

from typing import Any

import faust

from services.clearing.ledger import LedgerApplier
from services.common.dead_letters import Incoming

BATCH_SIZE = 2000
BATCH_SECONDS = 0.1


def build_app(*, app_id: str, bootstrap: str, redemptions_topic: str, applier: LedgerApplier) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        # A worker killed with SIGKILL holds its partitions until the group's session times out;
        # 10 s (not faust's 60 s) keeps a replacement worker from waiting a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    topic = app.topic(redemptions_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, concurrency=1)
    async def ledger(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_SECONDS):
            await applier.apply_with_retry(
                [Incoming(e.message.topic, e.message.partition, e.message.offset, e.value) for e in events]
            )

    return app
