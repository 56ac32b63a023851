"""Kafka and PostgreSQL as containers, for machines where a Docker engine answers.

Our own machines have no Docker engine, so this path is not exercised here; it is kept short and
configured from the same broker settings as the local process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import cache
from pathlib import Path

from deploy.local._process import wait_until
from deploy.local.errors import InfraError
from deploy.local.kafka_broker import broker_answers, broker_settings

KAFKA_IMAGE = "apache/kafka:4.0.1"
POSTGRES_IMAGE = "postgres:17"

Stop = Callable[[], None]


@cache
def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no permission: all mean "no Docker here"
        return False


def start_kafka(ready_timeout: float = 90.0) -> tuple[str, Stop]:
    """The official apache/kafka image in KRaft mode; returns its bootstrap address and a stop function.

    testcontainers' KafkaContainer drives Confluent's start scripts (and its with_kraft() rejects
    image tags below 7.0.0), so it cannot run apache/kafka:4.x; the image is configured through
    its KAFKA_* environment instead, on a fixed host port so the advertised address is known
    before the container starts.
    """
    from testcontainers.core.container import DockerContainer

    port = _free_port()
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port).with_envs(**_kafka_env(port))
    container.start()
    address = f"localhost:{port}"
    if not wait_until(lambda: broker_answers(address), timeout=ready_timeout, interval=0.5):
        container.stop()
        raise InfraError(f"the Kafka container was not ready within {ready_timeout:.0f} s")
    return address, container.stop


def start_postgres(database: str = "passclear") -> tuple[str, Stop]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(POSTGRES_IMAGE, dbname=database, driver=None).start()
    return container.get_connection_url(), container.stop


def _kafka_env(host_port: int) -> dict[str, str]:
    settings = broker_settings(port=9092, controller_port=9093, data_dir=Path("/var/lib/kafka/data"))
    del settings["log.dirs"]  # the image's own data directory
    settings |= {
        "listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "advertised.listeners": f"PLAINTEXT://localhost:{host_port}",
        "controller.quorum.voters": "1@localhost:9093",
    }
    # The image maps KAFKA_A_B to a.b; none of our keys holds '_' or '-', which it would escape.
    return {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in settings.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
