"""The local stack really starts Kafka and PostgreSQL, restarts cleanly, and fails in one line.

These tests start real servers in a private state directory on random ports below the ephemeral
range, so they neither clash with a stack started by `python -m deploy.local up` nor with each
other's runs. One stack serves the whole module: each test asks for it with `stack.up()`, a no-op
when an earlier test left it running.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from deploy.local import Infra, InfraError, KafkaBroker, LocalPostgres, LocalStack
from deploy.local._process import pid_alive, port_open, wait_until
from deploy.local.postgres import SERVER_SETTINGS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port(span: int = 1) -> int:
    """A free port, followed by span-1 free ones, below the ephemeral range (no client socket takes it)."""
    while True:
        port = random.randrange(20_000, 32_000)
        if all(_is_free(port + offset) for offset in range(span)):
            return port


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: it sits under a mode-700 directory, and when the tests run as root
    # PostgreSQL runs as another user, who must reach its data directory.
    path = Path(tempfile.mkdtemp(prefix="passclear-infra-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(state_dir: Path) -> Iterator[LocalStack]:
    port = _free_port(span=3)  # the broker, its controller, PostgreSQL
    stack = LocalStack(state_dir, kafka_port=port, pg_port=port + 2)
    yield stack
    stack.down()


@pytest.fixture
def infra(stack: LocalStack) -> Infra:
    return stack.up()


def test_up_serves_a_topic_and_a_database(infra: Infra) -> None:
    topic = f"infra-{uuid.uuid4().hex[:12]}"
    _create_topic(infra.bootstrap_servers, topic)
    producer = KafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    producer.send(topic, b"hello").get(timeout=30)
    producer.close()

    assert _read_all(infra.bootstrap_servers, topic, expected=1) == [b"hello"]
    assert _select_one(infra.database_url) == 1


def test_the_server_runs_with_the_settings_for_a_write_heavy_system(infra: Infra) -> None:
    async def shown() -> dict[str, str]:
        conn = await asyncpg.connect(infra.database_url)
        try:
            return {name: await conn.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS}
        finally:
            await conn.close()

    # Not PostgreSQL's defaults (128MB, 1GB, 80MB, 5min): SHOW words a value as it was set.
    assert asyncio.run(shown()) == SERVER_SETTINGS
    assert SERVER_SETTINGS["max_wal_size"] == "8GB" and SERVER_SETTINGS["checkpoint_timeout"] == "15min"


def test_up_again_is_a_no_op(stack: LocalStack, infra: Infra) -> None:
    pids = [service.pid for service in stack.status()]
    started = time.monotonic()

    assert stack.up() == infra
    assert [service.pid for service in stack.status()] == pids
    assert time.monotonic() - started < 5


def test_up_writes_the_env_file(stack: LocalStack, infra: Infra) -> None:
    assert stack.env_file.read_text().splitlines() == [
        f"KAFKA_BOOTSTRAP_SERVERS={infra.bootstrap_servers}",
        f"DATABASE_URL={infra.database_url}",
    ]


def test_cli_up_status_and_env_see_the_running_stack(stack: LocalStack, infra: Infra) -> None:
    env = {
        **os.environ,
        "PASSCLEAR_STATE_DIR": str(stack.state_dir),
        "PASSCLEAR_KAFKA_PORT": str(stack.kafka.port),
        "PASSCLEAR_PG_PORT": str(stack.postgres.port),
    }
    up = _cli("up", env=env)
    status = _cli("status", env=env)
    printed_env = _cli("env", env=env)

    assert up.returncode == 0 and infra.database_url in up.stdout
    assert status.returncode == 0 and status.stdout.count("running (pid") == 2
    assert printed_env.stdout.splitlines() == infra.env_lines()


def test_down_leaves_no_process_and_up_starts_again(stack: LocalStack, infra: Infra) -> None:
    pids = [service.pid for service in stack.status()]
    ports = [stack.kafka.port, stack.kafka.controller_port, stack.postgres.port]

    stack.down()

    assert not any(pid_alive(pid) for pid in pids if pid)
    assert not any(port_open(port) for port in ports)
    assert not stack.env_file.exists()
    again = stack.up()
    assert _select_one(again.database_url) == 1
    assert _lists_topics(again.bootstrap_servers)


def test_up_recovers_after_both_servers_were_killed(stack: LocalStack, infra: Infra) -> None:
    pids = [service.pid for service in stack.status()]
    for pid in pids:  # as a crash would: no clean shutdown, pid files left behind
        assert pid
        os.killpg(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids if pid), timeout=10)

    again = stack.up()

    assert [service.pid for service in stack.status()] != pids
    assert _select_one(again.database_url) == 1
    assert _lists_topics(again.bootstrap_servers)


def test_a_failed_up_stops_what_it_started(stack: LocalStack) -> None:
    stack.down()
    with _listening_on(stack.kafka.port), pytest.raises(InfraError, match="already in use"):
        stack.up()

    assert not stack.kafka.is_running()
    assert not stack.postgres.is_running()


def test_a_port_taken_by_another_process_is_a_one_line_error(tmp_path: Path) -> None:
    port = _free_port(span=2)
    with _listening_on(port):
        for server in (KafkaBroker(tmp_path, port=port), LocalPostgres(tmp_path, port=port)):
            with pytest.raises(InfraError) as caught:
                server.start()
            assert f"port {port} on 127.0.0.1 is already in use by another process" in str(caught.value)
            assert "\n" not in str(caught.value)


def test_missing_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(InfraError, match=r"^java is not on PATH; "):
        KafkaBroker(tmp_path, port=_free_port(span=2)).start()


def test_missing_maven_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java, "the local broker needs Java"
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(only_java))

    with pytest.raises(InfraError, match=r"^mvn is not on PATH; "):
        KafkaBroker(tmp_path, port=_free_port(span=2)).start()


def test_cli_prints_an_error_as_one_line_and_exits_1(tmp_path: Path) -> None:
    done = _cli("env", env={**os.environ, "PASSCLEAR_STATE_DIR": str(tmp_path)})

    assert done.returncode == 1
    assert done.stderr.startswith("passclear: the local stack is not running; ")
    assert done.stderr.count("\n") == 1


@contextmanager
def _listening_on(port: int) -> Iterator[None]:
    """A stranger's server on `port`; SO_REUSEADDR, as servers set it, lets it bind past TIME_WAIT."""
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", port))
        stranger.listen()
        yield


def _cli(command: str, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "deploy.local", command]
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _create_topic(bootstrap_servers: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()


def _read_all(bootstrap_servers: str, topic: str, *, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in records]
    finally:
        consumer.close()
    return values


def _lists_topics(bootstrap_servers: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def _select_one(database_url: str) -> int:
    async def query() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            return int(await connection.fetchval("SELECT 1"))
        finally:
            await connection.close()

    return asyncio.run(query())
