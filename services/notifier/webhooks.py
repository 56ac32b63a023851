"""Sends due webhook deliveries, signed per Standard Webhooks, and records every attempt.

Deliveries are claimed with FOR UPDATE SKIP LOCKED, so replicas never send the same one at
once; a crash mid-send leaves it pending and it is sent again with the same webhook-id.

The HTTP client is aiohttp, not httpx: measured in bench/notifier.py, httpx spent ~5 ms of CPU
per POST on this kind of machine and was the sender's bottleneck."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime

import aiohttp
import asyncpg
import structlog
from standardwebhooks import Webhook

from services.common.runtime import Runtime
from services.notifier.domain.schedule import signing_secrets
from services.notifier.outcomes import DELIVERY_COLUMNS, record_delivered, record_outcome
from services.notifier.settings import NotifierSettings

log = structlog.get_logger()
# The secrets of earlier rotations still within their overlap (the sender re-checks the time).
RETIRED_SECRETS = (
    "ARRAY(SELECT r.secret FROM webhook_retired_secrets r WHERE r.endpoint_id = e.endpoint_id "
    "AND r.valid_until > now() ORDER BY r.valid_until, r.secret) AS retired_secrets, "
    "ARRAY(SELECT r.valid_until FROM webhook_retired_secrets r WHERE r.endpoint_id = e.endpoint_id "
    "AND r.valid_until > now() ORDER BY r.valid_until, r.secret) AS retired_until"
)


def signed_headers(secrets: Sequence[str], notification_id: str, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; several secrets (a rotation's overlap) give several
    space-separated signatures, any of which a receiver may verify."""
    return {
        "content-type": "application/json",
        "webhook-id": notification_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(notification_id, at, body) for s in secrets),
    }


class WebhookSender:
    def __init__(self, rt: Runtime, settings: NotifierSettings) -> None:
        self._rt = rt
        self._settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        connector = aiohttp.TCPConnector(limit=self._settings.batch_size)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as client:
            while not stop.is_set():
                sent = await self.send_due(client)
                if sent == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.poll_seconds)

    async def send_due(self, client: aiohttp.ClientSession) -> int:
        async with self._rt.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS}, e.url, e.secret, e.disabled_reason, {RETIRED_SECRETS} "
                "FROM deliveries d JOIN webhook_endpoints e USING (endpoint_id) "
                "WHERE d.channel = 'webhook' AND d.status = 'pending' AND d.next_attempt_at <= now() "
                "ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                self._settings.batch_size,
            )
            outcomes = await asyncio.gather(*(self._post(client, row) for row in due))
            delivered = [row for row, outcome in zip(due, outcomes, strict=True) if outcome is None]
            await record_delivered(conn, self._rt, delivered)
            for row, outcome in zip(due, outcomes, strict=True):
                if outcome is not None:
                    disabled = row["disabled_reason"] is not None
                    await record_outcome(conn, self._rt, self._settings, row, outcome, final=disabled)
        return len(due)

    async def _post(self, client: aiohttp.ClientSession, row: asyncpg.Record) -> str | None:
        """None when delivered, else what went wrong."""
        if row["disabled_reason"] is not None:
            return f"endpoint disabled: {row['disabled_reason']}"[:500]
        now = self._rt.clock.now()
        retired = zip(row["retired_secrets"], row["retired_until"], strict=True)
        secrets = signing_secrets(now, row["secret"], retired)
        headers = signed_headers(secrets, row["notification_id"], row["body"], now)
        try:
            async with client.post(row["url"], data=row["body"].encode(), headers=headers) as response:
                status = response.status
        except TimeoutError:
            return f"Timeout: no answer within {self._settings.timeout_seconds:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None if 200 <= status < 300 else f"HTTP {status}"
