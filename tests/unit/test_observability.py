"""Request metrics are labelled by route template, so ids in paths do not explode the series; the
event loop's lag is timed."""

import asyncio
import time

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest

from services.common.observability import install_request_metrics, loop_lag_watch, probes_router


async def test_requests_are_counted_per_route_template_and_status() -> None:
    app = FastAPI()
    install_request_metrics(app, "unit-test")
    app.include_router(probes_router({}))

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for i in range(3):
            await client.get(f"/things/{i}")
        await client.get("/missing")
        ready = await client.get("/ready")
    assert ready.json() == {"status": "ready", "checks": {}}
    text = generate_latest().decode()
    assert (
        'passclear_http_requests_total{route="/things/{thing_id}",service="unit-test",status="200"} 3.0'
        in text
    )
    assert 'route="unmatched",service="unit-test",status="404"' in text


async def test_loop_lag_watch_records_how_long_a_callback_held_the_loop() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(loop_lag_watch("lag-test", every=0.005)(stop))
    await asyncio.sleep(0.02)
    time.sleep(0.06)  # a callback holding the loop for 60 ms
    await asyncio.sleep(0.02)
    stop.set()
    await task

    def sample(suffix: str, **labels: str) -> float:
        value = REGISTRY.get_sample_value(
            f"passclear_event_loop_lag_seconds{suffix}", {"service": "lag-test", **labels}
        )
        return value or 0.0

    assert sample("_count") >= 3
    assert sample("_sum") >= 0.05
    assert sample("_count") - sample("_bucket", le="0.05") >= 1  # the timer the callback held up
