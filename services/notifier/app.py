"""Bootstrap of the notifier service: `uvicorn services.notifier.app:app`."""

from __future__ import annotations

from pathlib import Path

from schemas.topics import Topic
from services.common.http import create_app
from services.common.runtime import Runtime
from services.notifier import handlers, reversals
from services.notifier.api import router
from services.notifier.consumer import BatchedEventConsumer
from services.notifier.email import EmailSender
from services.notifier.settings import NotifierSettings, SmtpSettings
from services.notifier.webhooks import WebhookSender

MIGRATIONS = Path(__file__).parent / "migrations"


async def start() -> Runtime:
    rt = await Runtime.start("notifier", MIGRATIONS)
    rt.consume("notifier-statements", [Topic.CLEARING], handlers.apply, kind=BatchedEventConsumer)
    rt.consume(reversals.CONSUMER, [Topic.REDEMPTIONS], reversals.apply, kind=reversals.RedemptionsConsumer)
    settings = NotifierSettings()
    for _ in range(settings.senders):
        rt.spawn(WebhookSender(rt, settings).run)
    rt.spawn(EmailSender(rt, settings, SmtpSettings()).run)
    return rt


app = create_app(
    "notifier",
    start,
    [router],
    description="Tells sites about their statements (and about reversals made after a window closed) and "
    "funders about their calls for funds: signed webhooks, e-mail, retries, dead letters, delivery log.",
)
