"""The local stack: the Kafka broker and the PostgreSQL server as one unit, for `up` and the tests."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deploy.local import containers
from deploy.local.containers import Stop
from deploy.local.errors import InfraError
from deploy.local.kafka_broker import KafkaBroker
from deploy.local.postgres import LocalPostgres
from deploy.local.service import ServiceStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR_ENV = "PASSCLEAR_STATE_DIR"
KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DATABASE_ENV = "DATABASE_URL"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    database_url: str

    def env_lines(self) -> list[str]:
        return [f"{KAFKA_ENV}={self.bootstrap_servers}", f"{DATABASE_ENV}={self.database_url}"]


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or REPO_ROOT / ".local")


class _LocalServer(Protocol):
    def start(self) -> str: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...


class LocalStack:
    """Both servers under one state directory (default <repo>/.local, or $PASSCLEAR_STATE_DIR)."""

    def __init__(
        self, state_dir: Path | None = None, *, kafka_port: int | None = None, pg_port: int | None = None
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.kafka = KafkaBroker(self.state_dir, port=kafka_port)
        self.postgres = LocalPostgres(self.state_dir, port=pg_port)
        self.env_file = self.state_dir / "stack.env"

    def up(self) -> Infra:
        """Start whichever server is not running, and write stack.env for shells and other tools.

        If one server fails to start, the other is stopped again unless it was already running:
        a failed `up` leaves things as it found them.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        servers: list[_LocalServer] = [self.kafka, self.postgres]
        already_running = [server.is_running() for server in servers]
        # In parallel: the broker's JVM start dominates, PostgreSQL fits inside it.
        with ThreadPoolExecutor(max_workers=2) as pool:
            starts = [pool.submit(server.start) for server in servers]
        failures = [error for start in starts if (error := start.exception()) is not None]
        if failures:
            for server, was_running, start in zip(servers, already_running, starts, strict=True):
                if not was_running and start.exception() is None:
                    server.stop()
            raise failures[0]
        infra = Infra(starts[0].result(), starts[1].result())
        self.env_file.write_text("".join(f"{line}\n" for line in infra.env_lines()))
        return infra

    def down(self) -> None:
        """Stop both servers. Data and the jar cache stay for the next `up`."""
        failures: list[InfraError] = []
        for stop in (self.postgres.stop, self.kafka.stop):
            try:
                stop()
            except InfraError as err:
                failures.append(err)  # still try the other one
        self.env_file.unlink(missing_ok=True)
        if failures:
            raise failures[0]

    def status(self) -> list[ServiceStatus]:
        return [self.kafka.status(), self.postgres.status()]

    def running_infra(self) -> Infra:
        kafka, postgres = self.status()
        if not (kafka.running and postgres.running):
            raise InfraError("the local stack is not running; start it with: python -m deploy.local up")
        return Infra(kafka.address, postgres.address)


# What ensure_infra started in this process, for stop_infra; newest last.
_stops: list[Stop] = []


def ensure_infra(state_dir: Path | None = None) -> Infra:
    """Kafka and PostgreSQL for the tests, each from the first source that applies:

    KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL already set; else containers if a Docker engine
    answers; else the local processes of LocalStack (reused if `up` already started them).
    """
    stack = LocalStack(state_dir)
    with ThreadPoolExecutor(max_workers=2) as pool:
        bootstrap = pool.submit(_provide, KAFKA_ENV, containers.start_kafka, stack.kafka)
        database_url = pool.submit(_provide, DATABASE_ENV, containers.start_postgres, stack.postgres)
        return Infra(bootstrap.result(), database_url.result())


def stop_infra() -> None:
    """Stop what ensure_infra started; servers it found already running are left to their owner."""
    while _stops:
        _stops.pop()()


def _provide(env_var: str, in_container: Callable[[], tuple[str, Stop]], local: _LocalServer) -> str:
    if os.environ.get(env_var):
        return os.environ[env_var]
    if containers.docker_available():
        try:
            address, stop = in_container()
        except Exception as err:  # testcontainers raises many types; the local process is the fallback
            _log.warning("could not start a container for %s (%s); starting a local process", env_var, err)
        else:
            _stops.append(stop)
            return address
    if local.is_running():
        return local.start()
    address = local.start()
    _stops.append(local.stop)
    return address
