"""Structured JSON logs, health and readiness probes, Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    app.add_middleware(RequestMetrics, service=service)


class RequestMetrics:
    """Counts and times requests per route template. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware costs a task and a stream per request on the hot path."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, capture)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUESTS.labels(self._service, path, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(self._service, path).observe(time.perf_counter() - started)


def loop_lag_watch(service: str, *, every: float = 0.01) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A background loop timing how late a timer `every` seconds ahead fires on the service's event
    loop (passclear_event_loop_lag_seconds): a request's callbacks wait as long behind whatever
    holds the loop (a long callback, or the process waiting for a CPU)."""
    lag = metrics.EVENT_LOOP_LAG.labels(service)

    async def watch(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + every
            await asyncio.sleep(every)
            lag.observe(max(0.0, loop.time() - due))

    return watch
