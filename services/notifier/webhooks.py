"""Sends due webhook deliveries, signed per Standard Webhooks, and records every attempt.

Deliveries are claimed with FOR UPDATE SKIP LOCKED, so replicas never send the same one at
once; a crash mid-send leaves it pending and it is sent again with the same webhook-id."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import asyncpg
import httpx
import structlog
from standardwebhooks import Webhook

from schemas.events import NotificationDelivered, NotificationFailed
from schemas.topics import Topic
from services.common.outbox import enqueue
from services.common.runtime import Runtime
from services.notifier.domain.schedule import next_attempt
from services.notifier.settings import NotifierSettings

log = structlog.get_logger()


def signed_headers(secret: str, notification_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": notification_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(notification_id, at, body),
    }


class WebhookSender:
    def __init__(self, rt: Runtime, settings: NotifierSettings) -> None:
        self._rt = rt
        self._settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self._settings.timeout_seconds) as client:
            while not stop.is_set():
                sent = await self.send_due(client)
                if sent == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.poll_seconds)

    async def send_due(self, client: httpx.AsyncClient) -> int:
        async with self._rt.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                "SELECT d.notification_id, d.statement_id, d.site_id, d.body, d.attempts, e.url, e.secret "
                "FROM deliveries d JOIN webhook_endpoints e USING (endpoint_id) "
                "WHERE d.status = 'pending' AND d.next_attempt_at <= now() "
                "ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                self._settings.batch_size,
            )
            outcomes = await asyncio.gather(*(self._post(client, row) for row in due))
            for row, outcome in zip(due, outcomes, strict=True):
                await self._record(conn, row, outcome)
        return len(due)

    async def _post(self, client: httpx.AsyncClient, row: asyncpg.Record) -> str | None:
        """None when delivered, else what went wrong."""
        headers = signed_headers(row["secret"], row["notification_id"], row["body"], self._rt.clock.now())
        try:
            response = await client.post(row["url"], content=row["body"].encode(), headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"

    async def _record(self, conn: asyncpg.Connection, row: asyncpg.Record, error: str | None) -> None:
        attempt = row["attempts"] + 1
        now = self._rt.clock.now()
        await conn.execute(
            "INSERT INTO delivery_attempts (notification_id, attempt, at, outcome) VALUES ($1, $2, $3, $4)",
            row["notification_id"],
            attempt,
            now,
            error or "delivered",
        )
        if error is None:
            await conn.execute(
                "UPDATE deliveries SET status = 'delivered', attempts = $2, delivered_at = $3, last_error = NULL "
                "WHERE notification_id = $1",
                row["notification_id"],
                attempt,
                now,
            )
            event: NotificationDelivered | NotificationFailed = NotificationDelivered(
                notification_id=row["notification_id"],
                statement_id=row["statement_id"],
                site_id=row["site_id"],
                channel="webhook",
                attempts=attempt,
            )
        else:
            retry_at = next_attempt(attempt, now, self._settings.retry_schedule)
            await conn.execute(
                "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = COALESCE($4, next_attempt_at), "
                "last_error = $5 WHERE notification_id = $1",
                row["notification_id"],
                "pending" if retry_at else "failed",
                attempt,
                retry_at,
                error,
            )
            if retry_at is not None:
                return
            event = NotificationFailed(
                notification_id=row["notification_id"],
                statement_id=row["statement_id"],
                site_id=row["site_id"],
                channel="webhook",
                attempts=attempt,
                reason=error,
            )
        envelope = self._rt.events.envelope(event, key=str(row["site_id"]))
        await enqueue(conn, self._rt.topic(Topic.NOTIFICATIONS), envelope)
