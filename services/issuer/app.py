"""Bootstrap of the issuer service: `uvicorn services.issuer.app:app`."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from services.common.http import create_app
from services.common.outbox_aiokafka import AioKafkaOutboxRelay
from services.common.runtime import Loop, Runtime
from services.common.settings import KafkaSettings
from services.issuer.api import router
from services.issuer.api_distribution import router as distribution_router
from services.issuer.api_lifecycle import router as lifecycle_router

MIGRATIONS = Path(__file__).parent / "migrations"


def bulk_relay(pool: asyncpg.Pool, kafka: KafkaSettings, schema: str) -> Loop:
    # Activating an order puts thousands of BookletActivated rows in the outbox at once.
    return AioKafkaOutboxRelay(pool, kafka.bootstrap_servers, schema=schema).run


async def start() -> Runtime:
    return await Runtime.start("issuer", MIGRATIONS, relay=bulk_relay)


app = create_app(
    "issuer",
    start,
    [router, distribution_router, lifecycle_router],
    description="Programmes, funders, sites, funded orders, booklets and pass codes.",
)
