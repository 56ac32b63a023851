"""The FastAPI application every service is built from, and Idempotency-Key handling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.observability import configure_logging, install_request_metrics, probes_router, tcp_check
from services.common.problems import Problem, install_problem_handlers
from services.common.runtime import Runtime
from services.common.settings import AuthSettings

StartRuntime = Callable[[], Awaitable[Runtime]]


def create_app(
    name: str,
    start: StartRuntime,
    routers: list[APIRouter],
    *,
    description: str = "",
    app_class: type[FastAPI] = FastAPI,
) -> FastAPI:
    """The service's app: lifespan (its Runtime), problem bodies, request metrics, probes, routers.
    `app_class` lets a service answer a hot path ahead of the framework (the redemption service)."""
    configure_logging(name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start()
        app.state.runtime = runtime
        yield
        await runtime.close()

    app = app_class(title=f"passclear {name}", description=description, lifespan=lifespan)
    app.state.auth_secret = AuthSettings().auth_secret
    install_problem_handlers(app)
    install_request_metrics(app, name)

    async def database() -> None:
        await app.state.runtime.pool.fetchval("SELECT 1")

    async def broker() -> None:
        await tcp_check(app.state.runtime.kafka.bootstrap_servers)()

    app.include_router(probes_router({"database": database, "broker": broker}))
    for router in routers:
        app.include_router(router)
    return app


def runtime(request: Request) -> Runtime:
    """The service's Runtime, put on the app by `create_app`'s lifespan."""
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


@dataclass(frozen=True)
class KeyedRequest:
    """An Idempotency-Key with the path it was sent to. The path is part of what the key stands
    for: the same key and body on another resource (another order's payment, another booklet's
    cancellation) is another request, refused with a 409, never answered with the first one's reply."""

    key: str
    path: str

    def hash(self, body: Any) -> str:
        return request_hash({"path": self.path, "body": body})


def keyed_request(
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> KeyedRequest | None:
    return None if idempotency_key is None else KeyedRequest(idempotency_key, request.url.path)


IdempotencyKey = Annotated[KeyedRequest | None, Depends(keyed_request)]


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim_idempotency_key(
    conn: asyncpg.Connection, principal: str, key: str, body_hash: str
) -> JSONResponse | None:
    """Inside the request's transaction, before its effect. Returns the stored answer when the
    same request was already served; raises 409 when the key was used for another request.

    The claim row is inserted first: a concurrent request with the same key blocks on it and,
    once the first commits, sees the stored answer (or, if the first rolled back, claims it)."""
    inserted = await conn.fetchval(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response) "
        "VALUES ($1, $2, $3, 0, ''::bytea) ON CONFLICT DO NOTHING RETURNING true",
        principal,
        key,
        body_hash,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if row["request_hash"] != body_hash:
        raise Problem(
            409,
            "idempotency-key-reused",
            "Idempotency-Key already used for another request",
            "send a new Idempotency-Key for a different request",
        )
    return JSONResponse(json.loads(row["response"]), status_code=row["status_code"])


async def store_idempotent_answer(
    conn: asyncpg.Connection, principal: str, key: str, status: int, body: Any
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE principal = $1 AND key = $2",
        principal,
        key,
        status,
        json.dumps(body, default=str).encode(),
    )


async def keyed_transaction(
    pool: asyncpg.Pool,
    principal: str,
    key: KeyedRequest | None,
    body: BaseModel | None,
    action: Callable[[asyncpg.Connection], Awaitable[Any]],
    status: int,
) -> JSONResponse:
    """Run `action(conn)` in one transaction with Idempotency-Key replay: the same key, path and
    body replay the first answer; the same key for another request is a 409. A refusal raised
    by `action` rolls the claim back with everything else."""
    async with pool.acquire() as conn, conn.transaction():
        if key is not None:
            asked = body.model_dump(mode="json") if body is not None else None
            replay = await claim_idempotency_key(conn, principal, key.key, key.hash(asked))
            if replay is not None:
                return replay
        answer = await action(conn)
        if key is not None:
            await store_idempotent_answer(conn, principal, key.key, status, answer)
    return JSONResponse(answer, status_code=status)
