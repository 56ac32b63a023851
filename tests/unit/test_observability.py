"""Request metrics are labelled by route template, so ids in paths do not explode the series."""

import httpx
from fastapi import FastAPI
from prometheus_client import generate_latest

from services.common.observability import install_request_metrics, probes_router


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
