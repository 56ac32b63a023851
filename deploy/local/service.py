"""What `status` reports about one local server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    address: str  # where clients connect: a bootstrap address or a postgresql:// URL
    pid: int | None
    log: Path
