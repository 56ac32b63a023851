"""Structured JSON logs, health and readiness probes, Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import metrics

Check = Callable[[], Awaitable[None]]


def configure_logging(service: str, level: int = logging.INFO) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def probes_router(checks: dict[str, Check]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="The database and the broker answer")
    async def ready() -> JSONResponse:
        results = await asyncio.gather(*(_run(check) for check in checks.values()))
        report = dict(zip(checks, results, strict=True))
        ok = all(r == "ok" for r in results)
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": report}, 200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _run(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), 2.0)
        return "ok"
    except Exception as exc:
        return f"failing: {type(exc).__name__}: {exc}"


def tcp_check(bootstrap: str) -> Check:
    host, _, port = bootstrap.split(",")[0].rpartition(":")

    async def check() -> None:
        _, writer = await asyncio.open_connection(host, int(port))
        writer.close()
        await writer.wait_closed()

    return check


def install_request_metrics(app: FastAPI, service: str) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.REQUESTS.labels(service, path, str(response.status_code)).inc()
        metrics.REQUEST_SECONDS.labels(service, path).observe(time.perf_counter() - started)
        return response
