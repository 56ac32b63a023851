"""Runs the four services as local processes (uvicorn), for the demo and the end-to-end tests.

Each service is a real process with its own log, started in its own session so that stopping
it (or killing it with SIGKILL in a test) takes its whole process group.

uvicorn, not granian (issue 4): granian 2.8.9's ASGI interface cost twice uvicorn's CPU per
request here (open loop at 3,000/s, one worker, an app answering after a 3 ms await: 0.155 ms
against 0.074 ms; 0.142 ms with its experimental Rust tasks), each request crossing from its
Rust threads to the Python event loop. Its httptools protocol sends each response in one write
(services/common/http_protocol.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.local._process import (
    LOOPBACK,
    pid_alive,
    port_open,
    signal_group,
    spawn_detached,
    terminate_group,
    wait_until,
)
from deploy.local.errors import InfraError

# uvicorn's httptools protocol, each response sent in one write (issue 4).
HTTP_PROTOCOL = "services.common.http_protocol:OneWriteHttpToolsProtocol"
SERVICE_PORTS = {"issuer": 8101, "redemption": 8102, "clearing": 8103, "notifier": 8104}


class StackError(Exception):
    """A one-line reason the services could not be started."""


@dataclass
class ServiceProcesses:
    state_dir: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    workers: dict[str, int] = field(default_factory=dict)  # uvicorn worker processes per service

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    def service_env(self) -> dict[str, str]:
        urls = {f"PASSCLEAR_{name.upper()}_URL": self.url(name) for name in self.ports}
        return {**os.environ, "PASSCLEAR_PROFILE": "dev", **urls, **self.env}

    def start(self, name: str) -> None:
        if self.running(name):
            return
        port = self.ports[name]
        if port_open(port):
            raise StackError(f"port {port} for the {name} service is taken by another process")
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{name}.app:app",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--http",
            HTTP_PROTOCOL,
            "--no-access-log",
            # No proxy stands in front of these loopback processes and no route reads the client's
            # address: uvicorn's default X-Forwarded-* rewrite looped over every request's headers
            # (0.8 % of a redemption worker's samples, issue 4).
            "--no-proxy-headers",
            "--log-level",
            "warning",
            "--workers",
            str(self.workers.get(name, 1)),
        ]
        pid = spawn_detached(command, log=logs / f"{name}.log", env=self.service_env(), append=True)
        self._pid_file(name).write_text(str(pid))

    def start_all(self) -> None:
        for name in self.ports:
            self.start(name)

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                raise StackError(
                    f"the {name} service exited; see {self.state_dir / 'logs' / (name + '.log')}"
                )
            try:
                if httpx.get(f"{self.url(name)}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(f"the {name} service was not ready within {timeout:.0f}s")

    def wait_all_ready(self, timeout: float = 120.0) -> None:
        for name in self.ports:
            self.wait_ready(name, timeout)

    def pid(self, name: str) -> int | None:
        path = self._pid_file(name)
        return int(path.read_text()) if path.exists() else None

    def running(self, name: str) -> bool:
        pid = self.pid(name)
        return pid is not None and pid_alive(pid)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the service's process group (SIGKILL: no chance to clean up)."""
        pid = self.pid(name)
        if pid is not None:
            signal_group(pid, sig)
            wait_until(lambda: not pid_alive(pid), timeout=15)

    def stop(self, name: str) -> None:
        """SIGTERM to the service's process group, SIGKILL after 20 s."""
        pid = self.pid(name)
        if pid is None:
            return
        with contextlib.suppress(InfraError):  # it survived SIGKILL: nothing more to try
            terminate_group(pid, grace=20)
        self._pid_file(name).unlink(missing_ok=True)

    def stop_all(self) -> None:
        for name in reversed(list(self.ports)):
            self.stop(name)

    def _pid_file(self, name: str) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.state_dir / f"{name}.pid"
