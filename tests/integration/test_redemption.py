"""Redemption on the real broker and database: single use under races, refusals, windows."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from schemas.events import PassRedeemed, WindowClosed
from schemas.topics import TOPICS, Topic, topic_name
from services.common.auth import Role
from tests.integration.flows import FINANCE, Programme, funded_programme
from tests.integration.helpers import auth, eventually, read_topic, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(service_env: dict[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    from services.issuer.app import app as issuer_app
    from services.redemption.app import app as redemption_app

    async with running(issuer_app) as issuer, running(redemption_app) as redemption:
        yield issuer, redemption


@pytest.fixture(scope="module")
async def programme(stack: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> Programme:
    issuer, redemption = stack
    p = await funded_programme(issuer, booklets=100, per_booklet=10, sites=3)

    async def projected() -> bool:
        r = await redemption.post("/redemptions", json=body(p.codes[-1]), headers=site(p, 0))
        return r.status_code == 201

    await eventually("the passes to reach the redemption projection", projected, timeout=90)
    p.codes.pop()
    return p


def body(code: str, path: str = "basic-skills") -> dict[str, object]:
    return {"code": code, "learning_path": path, "workshop_date": "2026-11-20", "duration_minutes": 90}


def site(p: Programme, n: int) -> dict[str, str]:
    return auth(Role.SITE, p.sites[n])


def redeem_request(code: str, p: Programme, redemption_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
    """A request as the service hands it to pg_store: `code` (canonical) at the programme's first site."""
    from services.redemption import pg_store

    return pg_store.Redeem(
        code,
        uuid.UUID(p.sites[0]),
        "basic-skills",
        date_of("2026-11-20"),
        60,
        redemption_id=redemption_id or uuid.uuid4(),
        event_id=uuid.uuid4(),
    )


async def test_one_hundred_concurrent_redemptions_of_one_pass_accept_exactly_one(stack, programme) -> None:  # type: ignore[no-untyped-def]
    _, redemption = stack
    code = programme.codes.pop()
    answers = await asyncio.gather(
        *(
            redemption.post("/redemptions", json=body(code), headers=site(programme, i % 3))
            for i in range(100)
        )
    )
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 99}, statuses
    refusal = next(a for a in answers if a.status_code == 409).json()
    assert refusal["type"].endswith("already-redeemed") and programme.sites[0] not in refusal["detail"]


async def test_randomized_races_never_double_accept_in_the_database_or_on_the_topic(
    stack,
    programme,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    _, redemption = stack
    codes = [programme.codes.pop() for _ in range(500)]  # 2,000 racing requests
    attempts = [(code, n) for code in codes for n in range(4)]
    import random

    random.Random(7).shuffle(attempts)
    sem = asyncio.Semaphore(40)

    async def attempt(code: str, n: int) -> tuple[str, int]:
        async with sem:
            r = await redemption.post("/redemptions", json=body(code), headers=site(programme, n % 3))
            return code, r.status_code

    results = await asyncio.gather(*(attempt(c, n) for c, n in attempts))
    accepted = collections.Counter(code for code, status in results if status == 201)
    assert set(accepted.values()) == {1} and len(accepted) == len(codes)
    from services.redemption.app import app as redemption_app

    per_pass = await redemption_app.state.runtime.pool.fetchval(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM redemptions WHERE NOT reversed GROUP BY pass_id) t"
    )
    assert per_pass == 1
    dangling = await redemption_app.state.runtime.pool.fetchval(
        "SELECT count(*) FROM redemptions r WHERE NOT EXISTS (SELECT FROM passes p WHERE p.pass_id = r.pass_id) "
        "OR NOT EXISTS (SELECT FROM windows w WHERE w.window_id = r.window_id)"
    )
    assert dangling == 0  # every redemption names a pass and a window that exist
    topic = topic_name(Topic.REDEMPTIONS, service_env["KAFKA_TOPIC_PREFIX"])

    async def on_topic() -> collections.Counter[uuid.UUID] | None:
        redeemed = collections.Counter(
            e.payload["pass_id"]
            for _, _, e in read_topic(service_env["KAFKA_BOOTSTRAP_SERVERS"], topic)
            if not isinstance(e, bytes) and e.type == PassRedeemed.TYPE
        )
        return redeemed if sum(redeemed.values()) >= len(codes) else None

    redeemed = await eventually("the redemptions on the topic", on_topic)
    assert max(redeemed.values()) == 1


async def test_refusals_are_problem_bodies_and_change_nothing(stack, programme) -> None:  # type: ignore[no-untyped-def]
    _issuer, redemption = stack
    code = programme.codes.pop()
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    cases = [
        (body(typo), site(programme, 0), 422, "mistyped-code"),
        (body("23456789ABC"[:-1] + "Z"), site(programme, 0), 422, "mistyped-code"),
        (body(code, "astrology"), site(programme, 0), 422, "unknown-learning-path"),
        ({**body(code), "extra": 1}, site(programme, 0), 422, "invalid-request"),
        (body(code), auth(Role.SITE, str(uuid.uuid4())), 403, "site-not-qualified"),
        (body(code), FINANCE, 403, "forbidden"),
        (body(code), {}, 401, "unauthenticated"),
    ]
    for payload, headers, status, slug in cases:
        r = await redemption.post("/redemptions", json=payload, headers=headers)
        assert r.status_code == status, (slug, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith(slug) and r.json()["title"]
    # None of them used the pass.
    r = await redemption.post("/redemptions", json=body(code), headers=site(programme, 0))
    assert r.status_code == 201


async def test_an_idempotency_key_replays_a_resend_and_refuses_a_modified_request(stack, programme) -> None:  # type: ignore[no-untyped-def]
    _, redemption = stack
    code, other = programme.codes.pop(), programme.codes.pop()
    key = {"idempotency-key": f"k-{uuid.uuid4()}", **site(programme, 1)}
    first = await redemption.post("/redemptions", json=body(code), headers=key)
    again = await redemption.post("/redemptions", json=body(code), headers=key)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    modified = await redemption.post("/redemptions", json=body(other), headers=key)
    assert modified.status_code == 409 and modified.json()["type"].endswith("idempotency-key-reused")


async def test_a_reversal_after_the_window_closed_lands_in_the_next_window(stack, programme) -> None:  # type: ignore[no-untyped-def]
    _, redemption = stack
    r = await redemption.post("/redemptions", json=body(programme.codes.pop()), headers=site(programme, 2))
    accepted = r.json()
    closed = (await redemption.post("/windows/current/close", headers=FINANCE)).json()
    assert closed["closed_window_id"] == accepted["window_id"]
    rid = accepted["redemption_id"]
    other_site = await redemption.post(
        f"/redemptions/{rid}/reversal", json={"reason": "not mine"}, headers=site(programme, 0)
    )
    assert other_site.status_code == 404
    rev = await redemption.post(
        f"/redemptions/{rid}/reversal", json={"reason": "workshop cancelled"}, headers=site(programme, 2)
    )
    assert rev.status_code == 201 and rev.json()["window_id"] == closed["next_window_id"]
    twice = await redemption.post(f"/redemptions/{rid}/reversal", json={"reason": "again"}, headers=FINANCE)
    assert twice.status_code == 409


async def test_window_markers_follow_every_redemption_of_their_window_under_concurrent_load(
    stack,
    programme,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    _, redemption = stack

    async def redeem(i: int, code: str) -> None:
        await redemption.post("/redemptions", json=body(code), headers=site(programme, i % 3))

    async def close_after(delay: float) -> int:
        await asyncio.sleep(delay)
        answer = await redemption.post("/windows/current/close", headers=FINANCE)
        return int(answer.json()["closed_window_id"])

    # Three rounds, each closing the window at another moment of a burst of redemptions.
    windows = []
    for delay in (0.02, 0.05, 0.1):
        codes = [programme.codes.pop() for _ in range(60)]
        *_, window = await asyncio.gather(*(redeem(i, c) for i, c in enumerate(codes)), close_after(delay))
        windows.append(window)
    topic = topic_name(Topic.REDEMPTIONS, service_env["KAFKA_TOPIC_PREFIX"])

    def markers(records: list, window: int) -> dict[int, int]:  # type: ignore[type-arg]
        return {
            p: o
            for p, o, e in records
            if not isinstance(e, bytes) and e.type == WindowClosed.TYPE and e.payload["window_id"] == window
        }

    async def markers_published() -> list | None:  # type: ignore[type-arg]
        records = read_topic(service_env["KAFKA_BOOTSTRAP_SERVERS"], topic)
        partitions = TOPICS[Topic.REDEMPTIONS].partitions
        return records if all(len(markers(records, w)) == partitions for w in windows) else None

    records = await eventually("the windows' markers", markers_published)
    for window in windows:
        marker_offset = markers(records, window)
        for partition, offset, e in records:
            if not isinstance(e, bytes) and e.type == PassRedeemed.TYPE:
                if e.payload["window_id"] == window:
                    assert offset < marker_offset[partition], (
                        "a redemption of the window came after its marker"
                    )
                elif e.payload["window_id"] > window:
                    assert offset > marker_offset[partition], (
                        "a later window's redemption came before the marker"
                    )


async def test_a_window_whose_month_has_ended_is_closed_once(stack) -> None:  # type: ignore[no-untyped-def]
    from services.redemption.api import close_current_window
    from services.redemption.app import app as redemption_app

    rt = redemption_app.state.runtime
    assert await close_current_window(rt, only_if_period_over=True) is None  # this month's window stays open
    await rt.pool.execute("UPDATE current_window SET opened_at = opened_at - interval '40 days'")
    closed = await close_current_window(rt, only_if_period_over=True)
    assert closed is not None
    assert await close_current_window(rt, only_if_period_over=True) is None  # a second tick: nothing
    current = await rt.pool.fetchval("SELECT window_id FROM current_window")
    assert current == closed["next_window_id"]


async def test_a_site_reads_only_its_own_redemptions_and_finance_reads_all(stack, programme) -> None:  # type: ignore[no-untyped-def]
    _, redemption = stack
    mine = (
        await redemption.post("/redemptions", json=body(programme.codes.pop()), headers=site(programme, 0))
    ).json()
    theirs = (
        await redemption.post("/redemptions", json=body(programme.codes.pop()), headers=site(programme, 1))
    ).json()
    own = await redemption.get("/redemptions", headers=site(programme, 0), params={"limit": 1000})
    assert {r["site_id"] for r in own.json()} == {programme.sites[0]}
    assert mine["redemption_id"] in {r["redemption_id"] for r in own.json()}
    peek = await redemption.get(
        "/redemptions", headers=site(programme, 0), params={"site_id": programme.sites[1]}
    )
    assert peek.status_code == 403
    other = await redemption.get(f"/redemptions/{theirs['redemption_id']}", headers=site(programme, 0))
    assert other.status_code == 404
    everything = await redemption.get("/redemptions", headers=FINANCE, params={"limit": 1000})
    assert {programme.sites[0], programme.sites[1]} <= {r["site_id"] for r in everything.json()}
    assert (
        await redemption.get(f"/redemptions/{theirs['redemption_id']}", headers=FINANCE)
    ).status_code == 200


def _rt():  # type: ignore[no-untyped-def]
    from services.redemption.app import app as redemption_app

    return redemption_app.state.runtime


async def test_redeem_passes_uses_one_generic_plan(stack) -> None:  # type: ignore[no-untyped-def]
    """Migration 004: without it, small batches replan the function's whole query at every call
    (custom plans), which doubled its CPU per redemption."""
    config = await _rt().pool.fetchval("SELECT proconfig FROM pg_proc WHERE proname = 'redeem_passes'")
    assert config == ["plan_cache_mode=force_generic_plan"]


async def test_a_redemption_in_flight_locks_no_row_of_its_pass_or_window(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """Migration 005: the foreign keys' KEY SHARE locks wrote into a random page of the passes for
    every redemption and made MultiXacts on the open window's row. Redemptions still reference only
    passes and windows that exist (checked in the race test)."""
    from schemas.pass_codes import normalize
    from services.redemption import pg_store
    from services.redemption.accept import stamp

    rt = _rt()
    code = normalize(programme.codes.pop())
    async with rt.pool.acquire() as conn, conn.transaction():
        outcome = await pg_store.redeem(conn, redeem_request(code, programme), stamp(rt))
        assert outcome.outcome == "accepted"
        # While it is uncommitted, another transaction can lock both rows outright.
        pass_id = await rt.pool.fetchval("SELECT pass_id FROM passes WHERE code = $1 FOR UPDATE NOWAIT", code)
        window = await rt.pool.fetchval(
            "SELECT window_id FROM windows WHERE window_id = $1 FOR UPDATE NOWAIT", outcome.window_id
        )
        assert pass_id is not None and window == outcome.window_id


async def test_each_outcome_of_the_database_function_is_the_problem_body_the_rules_word(
    stack,
    programme,  # type: ignore[no-untyped-def]
) -> None:
    """redeem_passes (migration 003) decides in SQL; the API words its outcome with rules.refusal.
    Passes in every state, written straight into the projection, get the bodies the rules give
    (the check-character and qualification cases are in the test above)."""
    import json
    import random
    from datetime import date, timedelta

    from schemas.pass_codes import ALPHABET, make_code, normalize
    from services.redemption.domain.rules import refusal

    _, redemption = stack
    pool = _rt().pool
    rng = random.Random()
    today = date.today()
    codes: dict[str, str] = {}
    for name, valid_from, valid_until, grace in (
        ("future", today + timedelta(days=30), today + timedelta(days=400), 0),
        ("past", date(2020, 1, 1), date(2020, 12, 31), 31),
    ):
        pid = uuid.uuid4()
        await pool.execute(
            "INSERT INTO programmes (programme_id, face_value_cents, valid_from, valid_until, grace_days, "
            "learning_paths, funders) VALUES ($1, 1000, $2, $3, $4, $5, $6)",
            pid,
            valid_from,
            valid_until,
            grace,
            ["basic-skills", "parenting"],
            json.dumps([{"funder_id": str(uuid.uuid4()), "share_bp": 10_000}]),
        )
        await pool.execute("INSERT INTO qualifications VALUES ($1, $2)", uuid.UUID(programme.sites[0]), pid)
        codes[name] = make_code("".join(rng.choice(ALPHABET) for _ in range(10)))
        await pool.execute(
            "INSERT INTO passes (pass_id, code, programme_id, booklet_id) VALUES ($1, $2, $3, $4)",
            uuid.uuid4(),
            codes[name],
            pid,
            uuid.uuid4(),
        )
    for status in ("cancelled", "expired"):
        codes[status] = normalize(programme.codes.pop())
        await pool.execute("UPDATE passes SET status = $2 WHERE code = $1", codes[status], status)
    codes["unknown"] = make_code("".join(rng.choice(ALPHABET) for _ in range(10)))

    async def terms(code: str) -> dict[str, object]:
        row = await pool.fetchrow(
            "SELECT valid_from, valid_until, learning_paths FROM passes JOIN programmes USING (programme_id) "
            "WHERE code = $1",
            code,
        )
        return {} if row is None else {**dict(row), "learning_paths": tuple(row["learning_paths"])}

    async def answers_as_worded(name: str, slug: str, path: str = "basic-skills") -> None:
        r = await redemption.post("/redemptions", json=body(codes[name], path), headers=site(programme, 0))
        expected = refusal(slug, **await terms(codes[name]))  # type: ignore[arg-type]
        assert r.status_code == expected.status, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        got = r.json()
        assert got["type"].endswith(slug) and (got["title"], got["detail"]) == (
            expected.title,
            expected.detail,
        )

    await answers_as_worded("unknown", "unknown-pass")
    await answers_as_worded("cancelled", "pass-cancelled")
    await answers_as_worded("expired", "pass-expired")
    await answers_as_worded("future", "pass-not-yet-valid")
    await answers_as_worded("past", "pass-expired")
    await answers_as_worded("past", "pass-expired", "astrology")  # expiry is checked first, as in the rules
    await pool.execute(
        "UPDATE programmes SET valid_from = $1 FROM passes p "
        "WHERE p.code = $2 AND programmes.programme_id = p.programme_id",
        today,
        codes["future"],
    )
    await answers_as_worded("future", "unknown-learning-path", "astrology")
    written = await pool.fetchval(
        "SELECT count(*) FROM redemptions r JOIN passes p USING (pass_id) WHERE p.code = ANY($1)",
        list(codes.values()),
    )
    assert written == 0
    # Now valid, the pass is accepted: none of the refusals used it.
    r = await redemption.post("/redemptions", json=body(codes["future"]), headers=site(programme, 0))
    assert r.status_code == 201


async def test_the_event_is_the_bytes_the_envelope_writes(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """The outbox row written in SQL is byte for byte what Envelope(PassRedeemed(...)).to_bytes()
    gives for the same values (the clearing consumer and the auditor read these bytes)."""
    from schemas.envelope import Envelope
    from schemas.events import FunderShare

    _, redemption = stack
    pool = _rt().pool
    r = await redemption.post("/redemptions", json=body(programme.codes.pop()), headers=site(programme, 1))
    assert r.status_code == 201
    answer = r.json()
    row = await pool.fetchrow(
        "SELECT o.key, o.partition, o.body, r.pass_id, r.accepted_at FROM outbox o "
        "JOIN redemptions r ON convert_from(o.body, 'UTF8') LIKE ('%\"redemption_id\":\"' || r.redemption_id || '\"%') "
        "WHERE r.redemption_id = $1",
        uuid.UUID(answer["redemption_id"]),
    )
    assert row["key"] == programme.sites[1] and row["partition"] is None
    stored = Envelope.from_bytes(row["body"])
    funders = await pool.fetchval(
        "SELECT funders::text FROM programmes WHERE programme_id = $1", uuid.UUID(programme.programme_id)
    )
    import json

    rebuilt = Envelope(
        event_id=stored.event_id,
        type="PassRedeemed",
        schema_version=1,
        occurred_at=row["accepted_at"],
        producer="redemption",
        key=programme.sites[1],
        payload=PassRedeemed(
            redemption_id=uuid.UUID(answer["redemption_id"]),
            pass_id=row["pass_id"],
            site_id=uuid.UUID(programme.sites[1]),
            programme_id=uuid.UUID(programme.programme_id),
            window_id=answer["window_id"],
            face_value_cents=answer["amount_cents"],
            funders=tuple(FunderShare.model_validate(f) for f in json.loads(funders)),
            learning_path="basic-skills",
            workshop_date=date_of("2026-11-20"),
            accepted_at=row["accepted_at"],
        ).model_dump(mode="json"),
    )
    assert bytes(row["body"]) == rebuilt.to_bytes()
    assert [f["funder_id"] for f in stored.payload["funders"]] == programme.funders


def date_of(text: str):  # type: ignore[no-untyped-def]
    from datetime import date

    return date.fromisoformat(text)


async def test_a_failing_request_fails_alone_and_a_batch_decides_as_one_by_one(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """Group commit on the real database: six requests in one batch, one of which breaks the
    batch's statement (its redemption id is taken), another a second try at the same pass. The
    batch rolls back, each request runs alone: four accepted, the repeat refused, the bad one
    fails with its own error and writes nothing."""
    import asyncpg

    from schemas.pass_codes import normalize
    from services.redemption import pg_store
    from services.redemption.accept import stamp
    from services.redemption.group_commit import GroupCommit

    rt = _rt()
    taken = await rt.pool.fetchval("SELECT redemption_id FROM redemptions LIMIT 1")
    assert taken is not None
    sizes: list[int] = []

    async def run_batch(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        async with rt.pool.acquire() as conn:
            return await pg_store.redeem_many(conn, batch, stamp(rt))

    async def run_one(request):  # type: ignore[no-untyped-def]
        async with rt.pool.acquire() as conn:
            return await pg_store.redeem(conn, request, stamp(rt))

    group = GroupCommit(run_batch, run_one)
    codes = [normalize(programme.codes.pop()) for _ in range(5)]

    def request(code: str, redemption_id: uuid.UUID | None = None) -> pg_store.Redeem:
        return redeem_request(code, programme, redemption_id)

    bad = request(codes[4], taken)
    requests = [
        request(codes[0]),
        request(codes[1]),
        request(codes[1]),
        request(codes[2]),
        bad,
        request(codes[3]),
    ]
    answers = await asyncio.gather(*(group.submit(r) for r in requests), return_exceptions=True)
    assert sizes == [6]
    assert [a.outcome if isinstance(a, pg_store.Outcome) else type(a) for a in answers] == [
        "accepted",
        "accepted",
        "already-redeemed",
        "accepted",
        asyncpg.UniqueViolationError,
        "accepted",
    ]
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", bad.event_id) == 0
    assert (
        await rt.pool.fetchval(
            "SELECT count(*) FROM redemptions r JOIN passes p USING (pass_id) WHERE p.code = $1", codes[4]
        )
        == 0
    )
    # Without the bad one, the batch goes through as one statement and decides the same way.
    sizes.clear()
    again = [request(codes[4]), request(codes[4]), request(codes[0])]
    answers = await asyncio.gather(*(group.submit(r) for r in again))
    assert sizes == [3] and [a.outcome for a in answers] == [
        "accepted",
        "already-redeemed",
        "already-redeemed",
    ]
    written = await rt.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_id = ANY($1)", [r.event_id for r in again]
    )
    assert written == 1
    # The service's own group commit (which keeps its connections between batches) does the same,
    # and a failed batch leaves it with connections that work.
    service: GroupCommit[pg_store.Redeem, pg_store.Outcome] = rt.extras["redeemer"]
    more = [normalize(programme.codes.pop()) for _ in range(3)]
    poison = request(more[2], taken)
    answers = await asyncio.gather(
        *(service.submit(r) for r in (request(more[0]), poison, request(more[1]))), return_exceptions=True
    )
    assert [a.outcome if isinstance(a, pg_store.Outcome) else type(a) for a in answers] == [
        "accepted",
        asyncpg.UniqueViolationError,
        "accepted",
    ]
    for _ in range(3):
        (after,) = await asyncio.gather(service.submit(request(normalize(programme.codes.pop()))))
        assert after.outcome == "accepted"


async def test_the_hot_route_validates_its_body_and_documents_it(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """POST /redemptions reads its body itself: invalid bodies are still 422 problem bodies naming
    the field, and the OpenAPI document still describes the body, the key and the refusals."""
    _, redemption = stack
    headers = site(programme, 0)
    for content, field in (
        (b"not json", None),
        (b'{"code": "X"}', "learning_path"),
        (
            b'{"code":"X","learning_path":"basic-skills","workshop_date":"soon","duration_minutes":60}',
            "workshop_date",
        ),
        (
            b'{"code":"X","learning_path":"basic-skills","workshop_date":"2026-11-20","duration_minutes":"60"}',
            "duration_minutes",
        ),
    ):
        r = await redemption.post(
            "/redemptions", content=content, headers={**headers, "content-type": "application/json"}
        )
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        problem = r.json()
        assert problem["type"].endswith("invalid-request") and problem["errors"][0]["loc"][0] == "body"
        if field:
            assert field in problem["detail"], problem
    long_key = {**headers, "idempotency-key": "k" * 201}
    r = await redemption.post("/redemptions", json=body(programme.codes[-1]), headers=long_key)
    assert r.status_code == 422 and r.json()["type"].endswith("invalid-request")
    doc = (await redemption.get("/openapi.json")).json()["paths"]["/redemptions"]["post"]
    schema = doc["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"code", "learning_path", "workshop_date", "duration_minutes"}
    assert {p["name"] for p in doc["parameters"]} == {"Idempotency-Key"}
    assert {"201", "401", "403", "404", "409", "410", "422"} <= set(doc["responses"])


async def test_the_documented_route_and_the_shortcut_answer_alike(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """The service answers POST /redemptions through AcceptShortcut; the FastAPI route (the one
    OpenAPI documents) runs the same core. Called on an app without the shortcut, it answers the
    same statuses and bodies."""
    from fastapi import FastAPI

    from services.common.problems import install_problem_handlers
    from services.redemption import accept
    from services.redemption.app import app as redemption_app

    plain = FastAPI()
    plain.state.runtime = redemption_app.state.runtime
    plain.state.auth_secret = redemption_app.state.auth_secret
    install_problem_handlers(plain)
    plain.include_router(accept.router)
    _, shortcut = stack
    code = programme.codes.pop()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://plain") as route:
        first = await route.post("/redemptions", json=body(code), headers=site(programme, 0))
        assert first.status_code == 201 and set(first.json()) == {
            "redemption_id",
            "window_id",
            "amount_cents",
            "accepted_at",
        }
        for client in (route, shortcut):
            cases = [
                (body(code), site(programme, 1)),
                (body(code[:-1] + ("A" if code[-1] != "A" else "B")), site(programme, 0)),
                ({**body(code), "extra": 1}, site(programme, 0)),
                (body(code), FINANCE),
                (body(code), {}),
            ]
            answers = [await client.post("/redemptions", json=b, headers=h) for b, h in cases]
            assert [a.status_code for a in answers] == [409, 422, 422, 403, 401]
            assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
            if client is route:
                expected = [a.json() for a in answers]
            else:
                assert [a.json() for a in answers] == expected


async def test_batches_racing_for_the_same_passes_in_opposite_orders_neither_deadlock_nor_double_accept(
    stack,
    programme,  # type: ignore[no-untyped-def]
) -> None:
    """Two batches on two connections, the same passes in opposite orders: each pass is accepted
    once, and neither batch fails (with rows inserted in request order, this deadlocks: Postgres
    then aborts one batch after deadlock_timeout)."""
    import random

    from schemas.pass_codes import ALPHABET, make_code
    from services.redemption import pg_store
    from services.redemption.accept import stamp

    rt = _rt()
    rng = random.Random()
    booklet = uuid.uuid4()
    for _ in range(3):
        codes = list({make_code("".join(rng.choice(ALPHABET) for _ in range(10))) for _ in range(300)})
        await rt.pool.executemany(
            "INSERT INTO passes (pass_id, code, programme_id, booklet_id) VALUES ($1, $2, $3, $4)",
            [(uuid.uuid4(), c, uuid.UUID(programme.programme_id), booklet) for c in codes],
        )

        def batch(order: list[str]) -> list[pg_store.Redeem]:
            return [redeem_request(c, programme) for c in order]

        async def run(requests: list[pg_store.Redeem]) -> list[pg_store.Outcome]:
            async with rt.pool.acquire() as conn:
                return await pg_store.redeem_many(conn, requests, stamp(rt))

        one, other = await asyncio.gather(run(batch(codes)), run(batch(codes[::-1])))
        for mine, theirs in zip(one, other[::-1], strict=True):
            assert {mine.outcome, theirs.outcome} == {"accepted", "already-redeemed"}


async def test_a_close_waits_for_a_batch_in_flight_and_a_batch_waits_for_a_close(stack, programme) -> None:  # type: ignore[no-untyped-def]
    """The window lock around redeem_passes, step by step (the load test above catches a missing
    lock only when the race happens to fall in a few microseconds): a close waits for a batch
    still open, and its markers come after the batch's outbox rows; a batch arriving during a
    close waits for it and is stamped with the window the close opened."""
    from schemas.pass_codes import normalize
    from services.redemption import pg_store
    from services.redemption.accept import stamp
    from services.redemption.api import close_current_window

    rt = _rt()

    def ask() -> pg_store.Redeem:
        return redeem_request(normalize(programme.codes.pop()), programme)

    first = ask()
    async with rt.pool.acquire() as conn:
        async with conn.transaction():
            (outcome,) = await pg_store.redeem_many(conn, [first], stamp(rt))
            closing = asyncio.ensure_future(close_current_window(rt))
            await asyncio.sleep(0.3)
            assert not closing.done(), "the close did not wait for the redemption in flight"
        closed = await closing
    assert outcome.outcome == "accepted" and closed["closed_window_id"] == outcome.window_id
    seqs = await rt.pool.fetch(
        "SELECT seq, partition FROM outbox WHERE event_id = $1 OR "
        "(partition IS NOT NULL AND convert_from(body, 'UTF8') LIKE $2)",
        first.event_id,
        f'%"type":"WindowClosed"%"window_id":{outcome.window_id},%',
    )
    redemption_seq = next(r["seq"] for r in seqs if r["partition"] is None)
    markers = [r["seq"] for r in seqs if r["partition"] is not None]
    assert markers and min(markers) > redemption_seq

    # A close in progress (the exclusive lock held, the next window being opened): a batch waits.
    later = ask()
    async with rt.pool.acquire() as closer, closer.transaction():
        await pg_store.lock_window_exclusive(closer)
        current = await pg_store.open_window(closer)
        await closer.execute("INSERT INTO windows (window_id, opened_at) VALUES ($1, now())", current + 1)
        await closer.execute("UPDATE current_window SET window_id = $1", current + 1)

        async def redeem_later() -> pg_store.Outcome:
            async with rt.pool.acquire() as conn:
                (answer,) = await pg_store.redeem_many(conn, [later], stamp(rt))
                return answer

        waiting = asyncio.ensure_future(redeem_later())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "a redemption went through during a close"
    answer = await waiting
    assert answer.outcome == "accepted" and answer.window_id == current + 1
