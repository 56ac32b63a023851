"""The four services as separate processes, on free loopback ports, for one test module."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.cli.client import Api
from services.cli.processes import ServiceProcesses
from services.common.auth import Role
from services.common.settings import DEV_SECRET

SERVICES = ("issuer", "redemption", "clearing", "notifier")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_system(state_dir: Path, env: dict[str, str]) -> Iterator[ServiceProcesses]:
    """Started and ready on entry; stopped on exit, with no service process left behind."""
    procs = ServiceProcesses(state_dir, env, ports={name: free_port() for name in SERVICES})
    procs.start_all()
    try:
        procs.wait_all_ready()
        yield procs
    finally:
        procs.stop_all()
        for name in procs.ports:
            assert not procs.running(name), f"{name} left running"


def api(procs: ServiceProcesses, service: str, role: Role = Role.FINANCE, subject: str = "finance") -> Api:
    return Api(procs.url(service), DEV_SECRET, role, subject)
