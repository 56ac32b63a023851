"""Session-wide fixtures: the real Kafka broker and Postgres, started once per test run.

Nothing here skips: without a broker or a database the tests that need them fail."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

os.environ.setdefault("PASSCLEAR_PROFILE", "dev")
# Many tests look at the events their services sent in the outboxes (keys, partitions, bodies, dead
# letters), which the relays would otherwise prune within a second of publishing them: an hour's
# retention here. The pruning itself (the default, none kept) has its own tests in test_plumbing.py;
# the e2e main job (tests/e2e/test_system.py) and the demo run with the default.
os.environ.setdefault("PASSCLEAR_OUTBOX_RETENTION_SECONDS", "3600")


@pytest.fixture(scope="session")
def infra() -> Iterator[object]:
    from deploy.local.stack import ensure_infra, stop_infra

    started = ensure_infra()
    yield started
    stop_infra()


@pytest.fixture(scope="session")
def bootstrap(infra: object) -> str:
    return infra.bootstrap_servers  # type: ignore[attr-defined]


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def topic_prefix(request: pytest.FixtureRequest, bootstrap: str) -> Iterator[str]:
    """Topics of one test module never meet another module's events, and go when it ends."""
    from services.common.kafka import delete_topics

    prefix = f"t-{request.module.__name__.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:8]}."
    yield prefix
    delete_topics(bootstrap, prefix)


@pytest.fixture(scope="module")
def database_url(infra: object) -> Iterator[str]:
    """A fresh, empty database per test module."""
    base: str = infra.database_url  # type: ignore[attr-defined]
    name = unique("t")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def service_env(bootstrap: str, database_url: str, topic_prefix: str) -> Iterator[dict[str, str]]:
    """Points in-process services at this module's database and topics."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
