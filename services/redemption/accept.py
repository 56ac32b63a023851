"""POST /redemptions, the hot path: accept a pass at the calling site.

One core (`redemption_answer`) serves two doors: the FastAPI route, which documents the call in
OpenAPI, and `AcceptShortcut`, which hands the same call straight to the core, skipping the
framework's routing, dependency and middleware layers (measured: most of the route's own CPU).
`RedemptionApp` puts the shortcut ahead of FastAPI itself: as a middleware it still ran under
Starlette's error middleware (which wraps `send`), FastAPI's telemetry check and its exception
and body-limit wrappers, none of which it uses (measured in-process, a stubbed answer through
those layers: 13-18 us a request as a middleware, 6-9 us ahead of FastAPI; ~4 % of a worker's
CPU per redemption). Both answer the same bodies, in the same order: 401/403 from the token,
422 invalid-request (pydantic's errors, located in the body), 422 mistyped-code before any
lookup, then the outcome of the database's redeem_passes (migration 003) worded by the domain rules.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from schemas.pass_codes import InvalidCode, normalize
from schemas.topics import Topic
from services.common import metrics
from services.common.auth import Role, authenticate
from services.common.http import claim_idempotency_key, request_hash, store_idempotent_answer
from services.common.problems import Problem, invalid_request
from services.common.runtime import Runtime
from services.redemption import pg_store
from services.redemption.domain import rules
from services.redemption.group_commit import GroupCommit
from services.redemption.settings import RedemptionSettings

router = APIRouter()
log = structlog.get_logger()
PARIS = ZoneInfo("Europe/Paris")
PATH = "/redemptions"
SERVICE = "redemption"
MAX_BODY = 16 * 1024  # a redemption is ~100 bytes
Redeemer = GroupCommit[pg_store.Redeem, pg_store.Outcome]


class RedemptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(min_length=1, max_length=40, examples=["7KQ3-MX9P-2RT"])
    learning_path: str = Field(min_length=1, max_length=100)
    workshop_date: date
    duration_minutes: int = Field(strict=True, gt=0, le=24 * 60)


class RedemptionAccepted(BaseModel):
    redemption_id: UUID
    window_id: int
    amount_cents: int
    accepted_at: str


REFUSED = {
    401: "no or invalid credentials",
    403: "not a site's token, or the site is not qualified for the pass's programme",
    404: "no pass has this code",
    409: "already redeemed (naming no other site), not yet valid, or an Idempotency-Key reused",
    410: "the pass was cancelled or has expired",
    413: "the body is too large",
    422: "an invalid body, a mistyped code (check character) or a learning path not offered",
}
_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RedemptionRequest.model_json_schema()}},
    },
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "the same key and body replay the first answer; another body is a 409",
        }
    ],
}


@router.post(
    PATH,
    status_code=201,
    tags=["redemptions"],
    openapi_extra=_DOC,
    response_model=RedemptionAccepted,
    responses={
        201: {"description": "accepted"},
        **{s: {"description": d, "content": {"application/problem+json": {}}} for s, d in REFUSED.items()},
    },
)
async def redeem(request: Request) -> Response:
    """Accept a pass at the calling site. The site comes from its credentials, never the body."""
    status, content = await redemption_answer(
        request.app.state.runtime,
        request.app.state.auth_secret,
        request.headers.get("authorization", ""),
        request.headers.get("idempotency-key"),
        await request.body(),
    )
    return Response(content, status_code=status, media_type="application/json")


async def redemption_answer(
    rt: Runtime, secret: str, authorization: str, key: str | None, raw: bytes
) -> tuple[int, bytes]:
    """The status and JSON body of an accepted (or replayed) redemption; raises Problem otherwise."""
    site = authenticate(secret, authorization, (Role.SITE,))
    body = _parse(raw, key)
    try:
        code = normalize(body.code)  # a mistyped code is refused before any lookup
    except InvalidCode as exc:
        raise Problem(422, "mistyped-code", "Mistyped pass code", str(exc)) from exc
    ask = pg_store.Redeem(
        code,
        _site_id(site.subject),
        body.learning_path,
        body.workshop_date,
        body.duration_minutes,
        redemption_id=rt.ids.new(),
        event_id=rt.ids.new(),
    )
    if key is None:
        # Without a key, requests arriving together share one statement and one commit.
        redeemer: Redeemer = rt.extras["redeemer"]
        return 201, orjson.dumps(_accepted(await redeemer.submit(ask)))
    async with rt.pool.acquire() as conn, conn.transaction():
        replay = await claim_idempotency_key(
            conn, site.label, key, request_hash(body.model_dump(mode="json"))
        )
        if replay is not None:
            return replay.status_code, bytes(replay.body)
        answer = _accepted(await pg_store.redeem(conn, ask, stamp(rt)))  # a refusal rolls the claim back
        await store_idempotent_answer(conn, site.label, key, 201, answer)
    return 201, orjson.dumps(answer)


@lru_cache(maxsize=8192)
def _site_id(subject: str) -> UUID:
    """A site token's subject as a UUID, parsed once per site (uuid.UUID(str) took 2.4 us a request)."""
    return UUID(subject)


def _parse(raw: bytes, key: str | None) -> RedemptionRequest:
    try:
        body = RedemptionRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_request(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    if key is not None and len(key) > 200:
        raise Problem(
            422, "invalid-request", "The request is not valid", "Idempotency-Key is at most 200 characters"
        )
    return body


def _accepted(outcome: pg_store.Outcome) -> dict[str, Any]:
    if outcome.outcome != "accepted":
        refusal = rules.refusal(
            outcome.outcome,
            valid_from=outcome.valid_from,
            valid_until=outcome.valid_until,
            learning_paths=outcome.learning_paths,
        )
        raise Problem(refusal.status, refusal.slug, refusal.title, refusal.detail)
    return {
        "redemption_id": str(outcome.redemption_id),
        "window_id": outcome.window_id,
        "amount_cents": outcome.face_value_cents,
        "accepted_at": outcome.accepted_at.isoformat(),
    }


def stamp(rt: Runtime) -> pg_store.Stamp:
    now = rt.clock.now()
    return pg_store.Stamp(now, now.astimezone(PARIS).date(), rt.topic(Topic.REDEMPTIONS), rt.name)


def redeemer(rt: Runtime) -> Redeemer:
    """The service's group commit of redemptions (one per process).

    Its batches keep their connections between batches instead of releasing them to the pool:
    asyncpg resets a released connection (one more statement and round trip per batch; measured
    6.5% of a worker's CPU). A batch that fails hands its connection back to the pool, which
    resets it or, if broken, replaces it; the kept ones go back at shutdown."""
    kept: list[asyncpg.Connection] = []
    seconds = metrics.GROUP_COMMIT_SECONDS.labels(SERVICE)
    sizes = metrics.GROUP_COMMIT_SIZE.labels(SERVICE)

    async def run_batch(batch: Sequence[pg_store.Redeem]) -> list[pg_store.Outcome]:
        conn = kept.pop() if kept else await rt.pool.acquire()
        started = time.perf_counter()
        try:
            outcomes = await pg_store.redeem_many(conn, batch, stamp(rt))
        except BaseException:
            await rt.pool.release(conn)
            raise
        seconds.observe(time.perf_counter() - started)
        sizes.observe(len(batch))
        kept.append(conn)
        return outcomes

    async def give_back() -> None:
        while kept:
            await rt.pool.release(kept.pop())

    rt.on_close(give_back)

    async def run_one(request: pg_store.Redeem) -> pg_store.Outcome:
        async with rt.pool.acquire() as conn:
            return await pg_store.redeem(conn, request, stamp(rt))

    settings: RedemptionSettings = rt.extras["settings"]  # read once, at start-up (app.start)
    return GroupCommit(run_batch, run_one, linger=settings.group_commit_linger_seconds)


class RedemptionApp(FastAPI):
    """The service's FastAPI app, with POST /redemptions answered by `AcceptShortcut` before any
    of FastAPI's or Starlette's layers; everything else (lifespan included) goes to FastAPI."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shortcut = AcceptShortcut(super().__call__, fastapi_app=self, service=SERVICE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._shortcut(scope, receive, send)


class AcceptShortcut:
    """ASGI middleware: POST /redemptions straight to `redemption_answer`; everything else to the
    app. Counts and times its requests as RequestMetrics does, under the same route label."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI, service: str) -> None:
        self._app = app
        self._fastapi = fastapi_app
        self._service = service
        # The metric children, looked up once rather than per request (`labels()` builds a key and
        # takes a lock each time).
        self._seconds = metrics.REQUEST_SECONDS.labels(service, PATH)
        self._counts: dict[int, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        try:
            status, content, media = await self._answer(scope, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", media), (b"content-length", str(len(content)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": content})
        finally:
            self._seconds.observe(time.perf_counter() - started)
            counter = self._counts.get(status)
            if counter is None:
                counter = self._counts[status] = metrics.REQUESTS.labels(self._service, PATH, str(status))
            counter.inc()

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        authorization, key = "", None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
        state = self._fastapi.state
        try:
            raw = await _read_body(receive)
            status, content = await redemption_answer(
                state.runtime, state.auth_secret, authorization, key, raw
            )
            return status, content, b"application/json"
        except Problem as problem:
            return problem.status, orjson.dumps(problem.body()), b"application/problem+json"
        except Exception:
            log.exception("unexpected error")
            internal = Problem(500, "internal", "Internal error", "the error was logged")
            return 500, orjson.dumps(internal.body()), b"application/problem+json"


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "disconnected", "Client disconnected", "the request body did not arrive")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise Problem(413, "too-large", "Request body too large", f"at most {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
