"""Bootstrap of the issuer service: `uvicorn services.issuer.app:app`."""

from __future__ import annotations

from pathlib import Path

from services.common.http import create_app
from services.common.outbox_aiokafka import aiokafka_relay
from services.common.runtime import Runtime
from services.issuer.api import router
from services.issuer.api_distribution import router as distribution_router
from services.issuer.api_lifecycle import router as lifecycle_router

MIGRATIONS = Path(__file__).parent / "migrations"


async def start() -> Runtime:
    # Activating an order puts thousands of BookletActivated rows in the outbox at once.
    return await Runtime.start("issuer", MIGRATIONS, relay=aiokafka_relay)


app = create_app(
    "issuer",
    start,
    [router, distribution_router, lifecycle_router],
    description="Programmes, funders, sites, funded orders, booklets and pass codes.",
)
