"""Bootstrap of the clearing service: `uvicorn services.clearing.app:app`.

One process serves the API and runs the faust worker on the same event loop."""

from __future__ import annotations

from pathlib import Path

from faust.contrib.asgi import faust_app_running

from schemas.topics import Topic
from services.clearing import issuer_events
from services.clearing.api import router
from services.clearing.coverage_api import router as coverage_router
from services.clearing.credit_notes_api import router as credit_notes_router
from services.clearing.export_api import router as export_router
from services.clearing.faust_worker import build_app
from services.clearing.funder_export_api import router as funder_export_router
from services.clearing.ledger import LedgerApplier
from services.clearing.settings import PayerSettings
from services.common.http import create_app
from services.common.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


async def start() -> Runtime:
    rt = await Runtime.start("clearing", MIGRATIONS)
    # A misconfigured payer account stops the start, not the first payout file.
    rt.extras["payer"] = PayerSettings()
    worker = build_app(
        app_id=f"{rt.kafka.topic_prefix}clearing",
        bootstrap=rt.kafka.bootstrap_servers,
        redemptions_topic=rt.topic(Topic.REDEMPTIONS),
        applier=LedgerApplier(rt),
    )
    # Coverage: what funders owe and pay, from the issuer's events.
    rt.consume("clearing-funds", [Topic.ISSUER], issuer_events.apply)
    running = faust_app_running(worker, stop_timeout=15)
    await running.__aenter__()
    rt.on_close(lambda: running.__aexit__(None, None, None))
    return rt


app = create_app(
    "clearing",
    start,
    [router, export_router, funder_export_router, coverage_router, credit_notes_router],
    description="Per-site reimbursement ledgers, statements and funder shares.",
)
