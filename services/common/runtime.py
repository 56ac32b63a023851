"""What a running service holds: its pool, producer, relay and background loops.

Built once at start-up (`Runtime.start`) and torn down at shutdown; the HTTP app reaches it
through `app.state.runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from kafka import KafkaProducer

from schemas.topics import Topic, topic_name
from services.common.db import create_pool, migrate
from services.common.events import EventFactory
from services.common.kafka import EventConsumer, Handler, ensure_topics, make_producer
from services.common.outbox import OutboxRelay
from services.common.ports import Clock, IdGenerator, RandomIds, SystemClock
from services.common.settings import DatabaseSettings, KafkaSettings

log = structlog.get_logger()
Loop = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class Runtime:
    name: str
    pool: asyncpg.Pool
    producer: KafkaProducer | None  # the default relay's; None when the service brings its own relay
    events: EventFactory
    kafka: KafkaSettings
    clock: Clock
    ids: IdGenerator
    extras: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        name: str,
        migrations: Path,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        kafka: KafkaSettings | None = None,
        database: DatabaseSettings | None = None,
        relay: Callable[[asyncpg.Pool, KafkaSettings, str], Loop] | None = None,
    ) -> Runtime:
        kafka = kafka or KafkaSettings()
        database = database or DatabaseSettings()
        clock = clock or SystemClock()
        await asyncio.to_thread(ensure_topics, kafka.bootstrap_servers, kafka.topic_prefix)
        pool = await create_pool(
            database.database_url, name, min_size=database.db_pool_min, max_size=database.db_pool_max
        )
        await migrate(pool, name, migrations)
        # `relay` lets a service pick another relay (e.g. outbox_aiokafka for bursty outboxes); the
        # default one's producer is started only when it is used: an idle client's threads cost the
        # redemption hot path ~9 % of a worker's CPU.
        producer: KafkaProducer | None = None
        if relay:
            loop = relay(pool, kafka, name)
        else:
            producer = await asyncio.to_thread(make_producer, kafka.bootstrap_servers)
            loop = OutboxRelay(pool, producer, schema=name).run
        ids = ids or RandomIds()
        runtime = cls(name, pool, producer, EventFactory(name, clock, ids), kafka, clock, ids)
        runtime.spawn(loop)
        return runtime

    def topic(self, topic: Topic) -> str:
        return topic_name(topic, self.kafka.topic_prefix)

    def consume(
        self, name: str, topics: list[Topic], handler: Handler, *, kind: type[EventConsumer] = EventConsumer
    ) -> None:
        """Run a consumer group `name` over `topics`, applying each event with `handler` exactly once."""
        consumer = kind(
            name=name,
            topics=[self.topic(t) for t in topics],
            bootstrap=self.kafka.bootstrap_servers,
            pool=self.pool,
            handler=handler,
            events=self.events,
            topic_prefix=self.kafka.topic_prefix,
        )
        self.spawn(consumer.run)

    def spawn(self, loop: Loop) -> None:
        self.tasks.append(asyncio.create_task(self._guard(loop), name=getattr(loop, "__qualname__", "loop")))

    async def _guard(self, loop: Loop) -> None:
        # A background loop that dies must not die silently: log it and start it again.
        while not self.stop.is_set():
            try:
                await loop(self.stop)
            except Exception:
                log.exception("background loop crashed; restarting", loop=getattr(loop, "__qualname__", "?"))
                await asyncio.sleep(1.0)

    def on_close(self, closer: Callable[[], Awaitable[Any]]) -> None:
        """Run `closer` at shutdown, before the background loops stop (last added, first run)."""
        self.closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 5)
        await self.pool.close()
