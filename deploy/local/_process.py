"""Process, port and file plumbing shared by the local Kafka broker, the PostgreSQL server and
the service processes that `passclear up`, the demo and the end-to-end tests start."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from deploy.local.errors import InfraError

LOOPBACK = "127.0.0.1"

# Popen handles of the servers this process launched, kept so that stopping one can reap it:
# an unreaped child stays a zombie, which still answers kill(pid, 0) as if it were alive.
_children: dict[int, subprocess.Popen[bytes]] = {}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def spawn_detached(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    append: bool = False,
) -> int:
    """Start a server that outlives this process: own session (no terminal signals), output to
    `log` (started afresh, or appended to: a restarted service keeps its earlier lines)."""
    with log.open("ab" if append else "wb") as out:
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[child.pid] = child
    return child.pid


def pid_alive(pid: int) -> bool:
    """True if `pid` is a running process (a zombie counts as gone)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (PostgreSQL runs as its own user when we are root)
    return not _is_zombie(pid)


def process_cmdline(pid: int) -> str | None:
    """The command line of `pid`, or None where /proc cannot tell (then callers trust the pid)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def signal_group(pid: int, signum: signal.Signals) -> None:
    """Send `signum` to the process group led by `pid`, if it is still there."""
    with suppress(ProcessLookupError):
        os.killpg(pid, signum)


def terminate_group(pid: int, *, first: signal.Signals = signal.SIGTERM, grace: float = 20.0) -> None:
    """Ask the process group led by `pid` to exit; SIGKILL it if it is still there after `grace` s."""
    signal_group(pid, first)
    if wait_until(lambda: not pid_alive(pid), timeout=grace):
        return
    signal_group(pid, signal.SIGKILL)
    if not wait_until(lambda: not pid_alive(pid), timeout=5.0):
        raise InfraError(f"process {pid} survived SIGKILL")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_port_free(port: int, *, service: str, env_var: str) -> None:
    """Fail with a one-line reason if another process already listens on our port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR so that sockets of a server we just stopped, lingering in TIME_WAIT,
        # do not count as taken: only a listener makes the bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise InfraError(
                f"cannot start {service}: port {port} on {LOOPBACK} is already in use by another process "
                f"(stop it, or choose another port with {env_var})"
            ) from None


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_tool(argv: Sequence[str], *, what: str, timeout: float, stdin_text: str = "", **options: Any) -> str:
    """Run a short-lived tool and return its output; failure becomes one InfraError line."""
    try:
        done: subprocess.CompletedProcess[str] = subprocess.run(
            argv,
            input=stdin_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **options,
        )
    except subprocess.TimeoutExpired:
        raise InfraError(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as err:  # e.g. the program is missing or not executable
        raise InfraError(f"{what} failed: {err}") from None
    if done.returncode != 0:
        raise InfraError(f"{what} failed: {telling_line(done.stderr + done.stdout)}")
    return done.stdout


def telling_line(text: str, pattern: str = r"ERROR|FATAL|PANIC|Exception|error:") -> str:
    """The line most likely to say what went wrong: the last one matching `pattern`, else the last one."""
    lines = [line.strip() for line in strip_ansi(text).splitlines()]
    lines = [line for line in lines if line and not line.startswith("at ")]
    matching = [line for line in lines if re.search(pattern, line)]
    return (matching or lines or ["(no output)"])[-1]


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (Maven emits some even in batch mode)."""
    return _ANSI.sub("", text)


def log_tail(path: Path, size: int = 64 * 1024) -> str:
    """The end of a log file, or '' if there is none yet."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop of one server across processes (e.g. parallel test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def _is_zombie(pid: int) -> bool:
    """True once every thread of `pid` has exited and only its exit status is left to collect.

    The main thread of a killed JVM turns zombie while its other threads are still exiting, and
    until the last of them is gone the process keeps its files, listening sockets included.
    """
    if not Path("/proc/self").exists():
        return False  # no procfs: kill(pid, 0) is all we can go by
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True  # reaped while we looked
    return all(_task_state(task) in ("Z", "X") for task in tasks)


def _task_state(task: Path) -> str:
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return "X"  # exited while we looked
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0]
