"""Bootstrap of the redemption service: `uvicorn services.redemption.app:app`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import asyncpg

from schemas.topics import Topic
from services.common import heap
from services.common.http import create_app
from services.common.kafka import partition_count
from services.common.observability import loop_lag_watch
from services.common.outbox_aiokafka import AioKafkaOutboxRelay
from services.common.runtime import Runtime
from services.common.settings import KafkaSettings
from services.redemption import accept, projection
from services.redemption.api import monthly_windows, router
from services.redemption.settings import RedemptionSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def relay(
    pool: asyncpg.Pool, kafka: KafkaSettings, schema: str, *, linger_seconds: float
) -> Callable[[asyncio.Event], Awaitable[None]]:
    """The aiokafka relay (kafka-python's producer thread cost a fifth of a worker on the hot path),
    in batches of 2,000: it shares a uvicorn worker's event loop with requests, and a backlog read
    20,000 rows at a time held that loop for over 100 ms (fetch 31 ms, rows 72 ms, then the
    producer batches), a stall every request of the worker waited for."""
    return AioKafkaOutboxRelay(
        pool,
        kafka.bootstrap_servers,
        schema=schema,
        batch_size=2000,
        linger_seconds=linger_seconds,
    ).run


async def start() -> Runtime:
    settings = RedemptionSettings()  # read once, at start-up
    rt = await Runtime.start(
        accept.SERVICE, MIGRATIONS, relay=partial(relay, linger_seconds=settings.relay_linger_seconds)
    )
    rt.extras["settings"] = settings
    rt.extras["redeemer"] = accept.redeemer(rt)
    rt.extras["redemption_partitions"] = await asyncio.to_thread(
        partition_count, rt.kafka.bootstrap_servers, rt.topic(Topic.REDEMPTIONS)
    )
    rt.consume("redemption-projection", [Topic.ISSUER], projection.apply)
    rt.spawn(loop_lag_watch(accept.SERVICE))  # what a request waits behind, on the hot path's loop
    if settings.window_period == "monthly":
        rt.spawn(partial(monthly_windows, rt, every_seconds=settings.window_check_seconds))
    heap.freeze_startup_heap()
    return rt


app = create_app(
    accept.SERVICE,
    start,
    [accept.router, router],
    description="Single-use acceptance of passes at qualified sites, reversals, clearing windows.",
    app_class=accept.RedemptionApp,
)
