"""Ordering, funding and activating a regional programme: 9 000 booklets of 5 (45 000 passes),
through the issuer's HTTP API (in process, over ASGI), until every event is on Kafka.

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else the project's local stack; creates its
own database and topic prefix. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from bench.common import fresh_database, infra, topic_prefix

BOOKLETS = 9_000
PER_BOOKLET = 5
TARGET_SECONDS = 5.0


def _infra() -> tuple[str, str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    return infra()


def _end_offset(consumer: KafkaConsumer, topic: str) -> int:
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    return sum(consumer.end_offsets(partitions).values())


async def _wait_on_topic(bootstrap: str, topic: str, expected: int, deadline_s: float = 120.0) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + deadline_s
        while await asyncio.to_thread(_end_offset, consumer, topic) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {expected} events on {topic} after {deadline_s}s")
            await asyncio.sleep(0.01)
    finally:
        consumer.close()


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await client.post(path, json=body, headers=headers)
    if r.status_code != 201:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    return r.json()


async def run(bootstrap: str, database_url: str) -> dict[str, float]:
    from schemas.topics import Topic, topic_name
    from services.common.auth import Role, issue_token
    from services.common.settings import AuthSettings
    from services.issuer.app import app

    secret = AuthSettings().auth_secret
    finance = {"authorization": f"Bearer {issue_token(secret, Role.FINANCE, 'bench')}"}
    topic = topic_name(Topic.ISSUER, os.environ["KAFKA_TOPIC_PREFIX"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://issuer", timeout=120) as client:
            funders = [
                (await _post(client, "/funders", {"name": n, "kind": k}, finance))["funder_id"]
                for n, k in (("Région BFC", "region"), ("ANCT", "state"), ("Enedis", "enedis"))
            ]
            programme = {
                "name": "Pass Numérique Bourgogne-Franche-Comté",
                "territory": "Bourgogne-Franche-Comté",
                "face_value_cents": 1000,
                "passes_per_booklet": PER_BOOKLET,
                "valid_from": "2026-01-01",
                "valid_until": "2026-12-31",
                "grace_days": 31,
                "learning_paths": ["basic-skills", "access-to-rights", "professional-insertion", "parenting"],
                "funders": [
                    {"funder_id": f, "share_bp": s} for f, s in zip(funders, (5000, 3000, 2000), strict=True)
                ],
                "min_age": 16,
                "max_age": 25,
            }
            programme_id = (await _post(client, "/programmes", programme, finance))["programme_id"]
            setup_events = len(funders) + 1
            await _wait_on_topic(bootstrap, topic, setup_events)

            start = time.perf_counter()
            order = await _post(
                client, "/orders", {"programme_id": programme_id, "booklets": BOOKLETS}, finance
            )
            ordered = time.perf_counter()
            for due in order["dues"]:
                headers = {"authorization": f"Bearer {issue_token(secret, Role.FUNDER, due['funder_id'])}"}
                body = {"amount_cents": due["amount_cents"], "bank_reference": uuid.uuid4().hex}
                answer = await _post(client, f"/orders/{order['order_id']}/payments", body, headers)
            activated = time.perf_counter()
            if answer["order_status"] != "active":
                raise RuntimeError(f"order not active after the last share: {answer}")
            expected = setup_events + 1 + len(order["dues"]) + BOOKLETS
            await _wait_on_topic(bootstrap, topic, expected)
            published = time.perf_counter()
            passes = await app.state.runtime.pool.fetchval("SELECT count(*) FROM passes")
    if passes != BOOKLETS * PER_BOOKLET:
        raise RuntimeError(f"{passes} passes, expected {BOOKLETS * PER_BOOKLET}")
    return {
        "order": ordered - start,
        "funding_and_activation": activated - ordered,
        "publishing_tail": published - activated,
        "total": published - start,
        "events": float(expected - setup_events),
        "passes": float(passes),
    }


def main() -> None:
    os.environ.setdefault("PASSCLEAR_PROFILE", "dev")
    bootstrap, base_url = _infra()
    os.environ.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": fresh_database(base_url, "issuer"),
            "KAFKA_TOPIC_PREFIX": topic_prefix("issuer"),
        }
    )
    figures = asyncio.run(run(bootstrap, os.environ["DATABASE_URL"]))
    print(
        f"booklets ordered, funded, activated: {BOOKLETS} of {PER_BOOKLET} ({int(figures['passes'])} passes)"
    )
    print(f"order placed:                   {figures['order']:.3f} s")
    print(f"3 payments (last activates):    {figures['funding_and_activation']:.3f} s")
    print(f"last events reach Kafka after:  {figures['publishing_tail']:.3f} s")
    print(
        f"total, order to all {int(figures['events'])} events on Kafka: {figures['total']:.3f} s (target ≤ {TARGET_SECONDS} s)"
    )
    result = {
        "metric": "issuer_order_fund_activate_45000_passes",
        "value": round(figures["total"], 3),
        "unit": "s",
        "target": TARGET_SECONDS,
        "baseline": None,
        "ratio": None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
