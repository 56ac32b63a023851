"""What the notifier does with the redemptions topic: tell a site, once per channel, of a
reversal made after its redemption's window had closed.

Such a redemption already stands in an issued statement (and perhaps a paid one); clearing
deducts it as a negative line of the window the reversal was stamped with. The decision comes
from the log alone: the notifier keeps its own projection of the window each redemption was
stamped with (`redemption_windows`), written with the processed-event record, and compares it
with the reversal's window (see `reversal_after_close`). The redemption precedes its reversal on
the same partition (both are keyed by site id), so it is always known by then.

A reversal within the still-open window nets out in the coming statement: nothing is sent."""

from __future__ import annotations

import json

import asyncpg

from schemas.envelope import Envelope
from schemas.events import PassRedeemed, Payload, RedemptionReversed
from services.common.dead_letters import PoisonMessage
from services.notifier.consumer import BatchedEventConsumer
from services.notifier.domain.schedule import reversal_after_close
from services.notifier.handlers import INSERT_DELIVERY, Row, site_deliveries

CONSUMER = "notifier-redemptions"


def reversal_body(ev: RedemptionReversed, redemption_window: int, notification: str) -> str:
    return json.dumps(
        {
            "type": "redemption.reversed",
            "id": notification,
            "data": {
                "reversal_id": str(ev.reversal_id),
                "redemption_id": str(ev.redemption_id),
                "pass_id": str(ev.pass_id),
                "site_id": str(ev.site_id),
                "programme_id": str(ev.programme_id),
                # What comes off the site's next statement (clearing's negative line).
                "amount_cents": -ev.face_value_cents,
                "redemption_window_id": redemption_window,
                "deducted_from_window_id": ev.window_id,
                "reason": ev.reason,
                "reversed_at": ev.reversed_at.isoformat(),
            },
        },
        separators=(",", ":"),
    )


async def redemption_reversed(conn: asyncpg.Connection, ev: RedemptionReversed) -> None:
    window: int | None = await conn.fetchval(
        "SELECT window_id FROM redemption_windows WHERE redemption_id = $1", ev.redemption_id
    )
    if window is None:
        # Its redemption comes first on the same partition; not knowing it means the log
        # contradicts itself: dead-lettered with the reason, the stream goes on.
        raise PoisonMessage(
            f"reversal {ev.reversal_id} of redemption {ev.redemption_id}, never seen redeemed"
        )
    if not reversal_after_close(window, ev.window_id):
        return
    rows: list[Row] = [
        (nid, "reversal", None, ev.reversal_id, ev.site_id, endpoint, channel, email, None, ev.window_id,
         reversal_body(ev, window, nid))
        for nid, channel, endpoint, email in await site_deliveries(conn, ev.site_id, ev.reversal_id)
    ]  # fmt: skip
    await conn.executemany(INSERT_DELIVERY, rows)


async def record_redemptions(conn: asyncpg.Connection, redeemed: list[PassRedeemed]) -> None:
    if redeemed:
        await conn.execute(
            "INSERT INTO redemption_windows (redemption_id, window_id) "
            "SELECT * FROM unnest($1::uuid[], $2::int[]) ON CONFLICT DO NOTHING",
            [r.redemption_id for r in redeemed],
            [r.window_id for r in redeemed],
        )


async def apply(conn: asyncpg.Connection, _: Envelope, payload: Payload) -> None:
    """One event (the per-message path: redelivery after a failed batch, poison messages)."""
    if isinstance(payload, PassRedeemed):
        await record_redemptions(conn, [payload])
    elif isinstance(payload, RedemptionReversed):
        await redemption_reversed(conn, payload)


class RedemptionsConsumer(BatchedEventConsumer):
    """Every redemption passes through here, so a batch costs a handful of statements, not a
    round trip per event: one inserts the batch's redemptions' windows, then each new reversal
    is decided."""

    async def _apply_new(self, conn: asyncpg.Connection, new: list[tuple[Envelope, Payload]]) -> None:
        # A reversal follows its redemption, so the batch's redemptions go in first.
        await record_redemptions(conn, [p for _, p in new if isinstance(p, PassRedeemed)])
        for _, payload in new:
            if isinstance(payload, RedemptionReversed):
                await redemption_reversed(conn, payload)
