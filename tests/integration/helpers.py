"""Running services in-process against the real broker and database, and reading topics."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
from fastapi import FastAPI
from kafka import KafkaConsumer, TopicPartition

from schemas.envelope import Envelope
from services.common.auth import Role, issue_token
from services.common.db import migrate
from services.common.settings import DEV_SECRET

T = TypeVar("T")


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (pool, migrations, relay, consumers), called over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=30) as client:
            yield client


def auth(role: Role, subject: str) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(DEV_SECRET, role, subject)}"}


async def eventually(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def read_topic(bootstrap: str, name: str) -> list[tuple[int, int, Envelope | bytes]]:
    """(partition, offset, envelope or raw bytes) of every record now on the topic."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[tuple[int, int, Envelope | bytes]] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    try:
                        out.append((tp.partition, m.offset, Envelope.from_bytes(m.value)))
                    except ValueError:
                        out.append((tp.partition, m.offset, m.value))
        return out
    finally:
        consumer.close()


async def migrate_before(pool: asyncpg.Pool, schema: str, migrations: Path, upgrade: str, work: Path) -> None:
    """Bring `schema` to where it stood before the migration named `upgrade` (e.g. "008"): every
    earlier migration of `migrations` applied, for an upgrade test with data."""
    before = work / "before"
    before.mkdir()
    for path in sorted(migrations.glob("*.sql")):
        if path.name < upgrade:
            shutil.copy(path, before / path.name)
    await migrate(pool, schema, before)
