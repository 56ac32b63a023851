"""The kernel's background writeback on a database host: from 4 MB of dirty pages on.

Linux's default starts writing dirty pages back only once they are 30 s old (or 10 % of memory
is dirty: 2.4 GB here). A file dirtied since then is written whole when its oldest page expires:
new table and index pages and the broker's log go out every 30 s, ~100 MB in a second, and every
commit's WAL flush waits behind them (P1 bench, 3,000 redemptions/s: 94-99 MB in the busiest
second, 60-132 ms with all tasks stalled on I/O, p99 of those seconds 87-212 ms). With a
background threshold (vm.dirty_background_bytes, as database hosts are commonly tuned) they go
out a few MB at a time: busiest second 32 MB (48-51 ms stalled) at 16 MB, 22 MB (41-44 ms) at
4 MB, two runs each.

The setting is the machine's, not the process's: `apply` sets it only where it is at its default
(the ratio rules) and this process may write /proc/sys, saves what was there, and `restore` puts
that back when the local server stops. deploy/sysctl/90-passclear.conf holds it for a real host.
"""

from __future__ import annotations

import json
from pathlib import Path

BACKGROUND_BYTES = 4 * 1024 * 1024
PROC_VM = Path("/proc/sys/vm")


def apply(saved: Path, vm: Path = PROC_VM) -> str:
    """Set background writeback to BACKGROUND_BYTES if the host left it at its default; says what it did."""
    try:
        current = int((vm / "dirty_background_bytes").read_text())
        ratio = int((vm / "dirty_background_ratio").read_text())
    except (OSError, ValueError):
        return "kernel writeback: not readable here, left as it is"
    if current == BACKGROUND_BYTES:
        return f"kernel writeback: from {BACKGROUND_BYTES >> 20} MB of dirty pages (already set)"
    if current != 0:
        return f"kernel writeback: from {current >> 20} MB of dirty pages (the host's own setting, kept)"
    try:
        (vm / "dirty_background_bytes").write_text(str(BACKGROUND_BYTES))
    except OSError:
        return (
            f"kernel writeback: at the host's default ({ratio} % of memory or 30 s); "
            f"as root: sysctl vm.dirty_background_bytes={BACKGROUND_BYTES}"
        )
    saved.write_text(json.dumps({"dirty_background_ratio": ratio}))
    return f"kernel writeback: from {BACKGROUND_BYTES >> 20} MB of dirty pages (was {ratio} % of memory)"


def restore(saved: Path, vm: Path = PROC_VM) -> None:
    """Put back what `apply` changed, unless someone changed it since."""
    try:
        before = json.loads(saved.read_text())
    except (OSError, ValueError):
        return
    try:
        if int((vm / "dirty_background_bytes").read_text()) == BACKGROUND_BYTES:
            # Writing the ratio sets the bytes back to 0: the two are one setting, either way.
            (vm / "dirty_background_ratio").write_text(str(before["dirty_background_ratio"]))
    except (OSError, ValueError, KeyError):
        pass
    saved.unlink(missing_ok=True)


def describe(vm: Path = PROC_VM) -> str:
    """The background writeback in force, as the benchmarks print it beside their figures."""
    try:
        current = int((vm / "dirty_background_bytes").read_text())
        ratio = int((vm / "dirty_background_ratio").read_text())
        expire = int((vm / "dirty_expire_centisecs").read_text())
    except (OSError, ValueError):
        return "kernel writeback: not readable here"
    if current:
        return f"kernel writeback: from {current >> 20} MB of dirty pages on (vm.dirty_background_bytes)"
    return f"kernel writeback: from {ratio} % of memory dirty or pages {expire / 100:.0f} s old (the default)"
