"""A real Apache Kafka 4.0 broker (KRaft, one node) on loopback, started from Maven Central jars.

There is no Docker engine on our machines, so the broker runs as a plain JVM process: Maven
gathers its classpath once (deploy/kafka/pom.xml), the storage is formatted once, and the broker
is launched detached so that it outlives the command or test session that started it. Its pid and
ports are recorded in <state>/kafka/broker.json; everything it writes stays under <state>/kafka.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from deploy.local._process import (
    LOOPBACK,
    ensure_port_free,
    file_lock,
    log_tail,
    pid_alive,
    port_open,
    process_cmdline,
    run_tool,
    spawn_detached,
    strip_ansi,
    telling_line,
    terminate_group,
    wait_until,
)
from deploy.local.errors import InfraError
from deploy.local.service import ServiceStatus

DEFAULT_PORT = 19092
PORT_ENV = "PASSCLEAR_KAFKA_PORT"

KAFKA_DEPLOY_DIR = Path(__file__).resolve().parents[1] / "kafka"
POM = KAFKA_DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DEPLOY_DIR / "log4j2.properties"

_JVM_OPTIONS = ("-Xms256m", "-Xmx512m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}")
# The storage tool runs for a second: the quick JIT tier is all it needs.
_TOOL_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}")


@dataclass(frozen=True)
class _BrokerRecord:
    pid: int
    port: int
    controller_port: int

    @classmethod
    def load(cls, path: Path) -> _BrokerRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))


class KafkaBroker:
    """One local broker per state directory; `start` and `stop` are idempotent."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        self.port = port or int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self.controller_port = controller_port or self.port + 1
        self.ready_timeout = ready_timeout
        self._dir = state_dir / "kafka"
        self.log_path = self._dir / "broker.log"
        self.libs_dir = self._dir / "libs"
        self._record_path = self._dir / "broker.json"
        self._properties_path = self._dir / "server.properties"
        self._data_dir = self._dir / "data"

    def start(self) -> str:
        """Start the broker unless it already runs; return its bootstrap address once it answers."""
        with file_lock(self._dir / ".lock"):
            record = self._live_record()
            if record is not None:
                self._await_ready(record)
                return _address(record.port)
            record = self._launch()
            try:
                self._await_ready(record)
            except InfraError:
                self._terminate(record)  # leave no half-started JVM behind
                raise
            return _address(record.port)

    def stop(self) -> None:
        """Stop the broker if it runs: SIGTERM, then SIGKILL after 20 s."""
        with file_lock(self._dir / ".lock"):
            record = self._live_record()
            if record is not None:
                self._terminate(record)
            self._record_path.unlink(missing_ok=True)

    def is_running(self) -> bool:
        return self._live_record() is not None

    def status(self) -> ServiceStatus:
        record = self._live_record()
        port = record.port if record else self.port
        return ServiceStatus(
            name="kafka",
            running=record is not None and port_open(record.port),
            address=_address(port),
            pid=record.pid if record else None,
            log=self.log_path,
        )

    def _live_record(self) -> _BrokerRecord | None:
        """The recorded broker if that process still runs; a stale record reads as None."""
        record = _BrokerRecord.load(self._record_path)
        if record is None or not pid_alive(record.pid):
            return None
        # After a reboot or crash the pid may belong to an unrelated process by now.
        cmdline = process_cmdline(record.pid)
        ours = cmdline is None or ("kafka.Kafka" in cmdline and str(self._properties_path) in cmdline)
        return record if ours else None

    def _launch(self) -> _BrokerRecord:
        self._record_path.unlink(missing_ok=True)
        for port in (self.port, self.controller_port):
            ensure_port_free(port, service="the Kafka broker", env_var=PORT_ENV)
        java = _require("java", "the Kafka broker needs Java 17 or later (e.g. openjdk-17-jre-headless)")
        classpath = f"{fetch_libs(self.libs_dir)}/*"
        settings = broker_settings(
            port=self.port, controller_port=self.controller_port, data_dir=self._data_dir
        )
        self._properties_path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self._format_storage(java, classpath)
        argv = [java, *_JVM_OPTIONS, "-cp", classpath, "kafka.Kafka", str(self._properties_path)]
        record = _BrokerRecord(
            pid=spawn_detached(argv, log=self.log_path, cwd=self._dir),
            port=self.port,
            controller_port=self.controller_port,
        )
        record.save(self._record_path)
        return record

    def _terminate(self, record: _BrokerRecord) -> None:
        terminate_group(record.pid, grace=20.0)
        self._record_path.unlink(missing_ok=True)

    def _format_storage(self, java: str, classpath: str) -> None:
        """Format the KRaft storage once; a formatted directory keeps its cluster id across starts."""
        if (self._data_dir / "meta.properties").exists():
            return
        argv = [java, *_TOOL_JVM_OPTIONS, "-cp", classpath, "kafka.tools.StorageTool", "format"]
        argv += ["-t", new_cluster_id(), "-c", str(self._properties_path), "--ignore-formatted"]
        run_tool(argv, what="formatting the Kafka storage", timeout=120)

    def _await_ready(self, record: _BrokerRecord) -> None:
        address = _address(record.port)

        def ready() -> bool:
            if not pid_alive(record.pid):
                raise InfraError(f"the Kafka broker exited while starting: {self._log_reason()}")
            return port_open(record.port) and broker_answers(address)

        if not wait_until(ready, timeout=self.ready_timeout, interval=0.25):
            raise InfraError(
                f"the Kafka broker was not ready within {self.ready_timeout:.0f} s: {self._log_reason()}"
            )

    def _log_reason(self) -> str:
        tail = log_tail(self.log_path)
        return f"{telling_line(tail) if tail.strip() else 'nothing logged yet'} (log: {self.log_path})"


def broker_settings(*, port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    """The broker's configuration: one node that is both broker and controller, on loopback only."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static voter set, rather than `format --standalone`, keeps the controller address a
        # plain setting: the port can change between starts without reformatting the storage.
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # One node: the internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # A consumer group forms at once instead of waiting 3 s for more members: tests stay fast.
        "group.initial.rebalance.delay.ms": "0",
        # On restart the controller in this same process rejects the broker's registration until
        # the previous incarnation's session expires (KAFKA-19130, fixed in 4.1): with the default
        # 9 s session every restart took ~13 s. Heartbeats stay inside this one process, so a
        # short session only fences the broker after five missed beats.
        "broker.heartbeat.interval.ms": "400",
        "broker.session.timeout.ms": "2000",
        # Topics are created explicitly, with the partitions and retention set in one place.
        "auto.create.topics.enable": "false",
    }


def new_cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` prints it, without starting a JVM for it.

    Kafka's Uuid is 16 random bytes in unpadded URL-safe base64, and it never hands out one
    starting with '-' (it would read as a command-line option).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def fetch_libs(libs_dir: Path) -> Path:
    """The broker's classpath directory, gathered by Maven once per version of the pom."""
    stamp = libs_dir / ".pom-sha256"
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return libs_dir
    mvn = _require("mvn", "Maven fetches the Kafka jars once (e.g. apt-get install maven)")
    # Fetch beside the cache and swap it in whole, so an interrupted fetch never looks complete.
    partial = libs_dir.with_name(libs_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _copy_dependencies(mvn, partial)
    (partial / stamp.name).write_text(wanted)
    shutil.rmtree(libs_dir, ignore_errors=True)
    partial.rename(libs_dir)
    return libs_dir


def _copy_dependencies(mvn: str, into: Path) -> None:
    argv = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies"]
    argv += [f"-DoutputDirectory={into}", "-DincludeScope=runtime"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise InfraError("Maven could not fetch the Kafka jars: no answer within 15 minutes") from None
    if done.returncode != 0:
        raise InfraError(f"Maven could not fetch the Kafka jars: {_maven_reason(done.stdout + done.stderr)}")


def _maven_reason(output: str) -> str:
    """Maven's first [ERROR] line names the cause; the ones after it are boilerplate about -e and -X."""
    for line in strip_ansi(output).splitlines():
        reason = line.removeprefix("[ERROR]").removesuffix("-> [Help 1]").strip()
        if line.startswith("[ERROR]") and reason:
            return reason
    return telling_line(output)


def broker_answers(address: str) -> bool:
    """The readiness test: the broker answers an admin request, not merely a TCP connect."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=address,
            client_id="passclear-local-readiness",
            bootstrap_timeout_ms=2000,
            request_timeout_ms=5000,
        )
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InfraError(f"{tool} is not on PATH; {why}")
    return path


def _address(port: int) -> str:
    return f"{LOOPBACK}:{port}"
