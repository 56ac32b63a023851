"""Where the machine's CPU went during a benchmark phase, per group of processes (from /proc).

A process belongs to the group of the nearest ancestor (or itself) that a rule names: a
service's uvicorn parent and its workers by pid, Postgres, Kafka and the load generators by
a word of their command line (a Postgres backend's names its database). The rest is "other" — on a shared machine, the figure that says how noisy a run was.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
COMMANDS = {
    "postgres": "postgres",
    "kafka.Kafka": "kafka",
    "openloop-": "load generator",
    "wrk": "load generator",
}


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    command: str
    cpu_s: float  # user + system, since it started
    reaped_s: float  # the same, of the children it has waited for
    started: int = 0  # clock ticks after boot: with the pid, names the process (pids are reused)


def processes() -> dict[int, Process]:
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ", which may hold spaces
        ppid, utime, stime, cutime, cstime, started = (int(fields[i]) for i in (1, 11, 12, 13, 14, 19))
        pid = int(entry.name)
        found[pid] = Process(pid, ppid, command, (utime + stime) / TICKS, (cutime + cstime) / TICKS, started)
    return found


def group_of(
    pid: int, table: Mapping[int, Process], roots: Mapping[int, str], commands: Mapping[str, str]
) -> str:
    """The group of `pid`: `roots` by pid, then `commands` (the caller's, then COMMANDS) by a word of
    the command line, at the process or its nearest ancestor that one names."""
    rules = {**commands, **COMMANDS}
    seen = 0
    while pid in table and seen < 64:
        if pid in roots:
            return roots[pid]
        words = table[pid].command.split()
        for needle, group in rules.items():
            if words and (needle in words[0] or needle in words[1:]):
                return group
        pid, seen = table[pid].ppid, seen + 1
    return "other"


class CpuMeter:
    """`start()` then `stop()`: CPU seconds per group in between. A process that ended meanwhile
    counts only once its parent waited for it, and then as its parent's `reaped` group: the load
    generators, children of the benchmark, run for exactly a phase."""

    def __init__(
        self,
        roots: Mapping[int, str],
        commands: Mapping[str, str] | None = None,
        reaped: Mapping[int, str] | None = None,
    ) -> None:
        self._roots = dict(roots)
        self._commands = dict(commands or {})
        self._reaped = dict(reaped or {})
        self._before: dict[int, Process] = {}

    def start(self) -> None:
        self._before = processes()

    def stop(self) -> dict[str, float]:
        after = processes()
        used: dict[str, float] = defaultdict(float)
        for pid, proc in after.items():
            start = self._before.get(pid)
            # The same process, not its pid reused; not its command line either, which Postgres
            # backends rewrite with their state ("idle", "SELECT"...).
            same = start if start is not None and start.started == proc.started else None
            spent = proc.cpu_s - (same.cpu_s if same else 0.0)
            if spent > 0:
                used[group_of(pid, after, self._roots, self._commands)] += spent
            if pid in self._reaped and same:
                used[self._reaped[pid]] += proc.reaped_s - same.reaped_s
        return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def describe(used: Mapping[str, float], per: int) -> str:
    """`used` as "group 12.3 s (0.21 ms each)" for `per` units of work."""
    total = sum(used.values())
    parts = [f"{g} {s:.1f} s ({1000 * s / per:.3f} ms each)" for g, s in used.items()] if per else []
    return f"total {total:.1f} CPU-s; " + ", ".join(parts)


@dataclass(frozen=True)
class MachineTimes:
    """The whole machine's CPU time by state since boot, in seconds (the first line of /proc/stat):
    what a phase's groups could not use, and what the hypervisor took (steal)."""

    busy: float
    idle: float
    iowait: float
    steal: float

    @classmethod
    def read(cls) -> MachineTimes:
        fields = [int(v) / TICKS for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
        return cls(user + nice + system + irq + softirq, idle, iowait, steal)

    def since(self, start: MachineTimes) -> MachineTimes:
        return MachineTimes(
            self.busy - start.busy,
            self.idle - start.idle,
            self.iowait - start.iowait,
            self.steal - start.steal,
        )

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.iowait + self.steal

    @property
    def stolen_share(self) -> float:
        """The part of the machine's CPU time the hypervisor gave other guests (0 to 1)."""
        return self.steal / self.total if self.total else 0.0


def describe_machine(spent: MachineTimes) -> str:
    """A phase's machine-wide CPU time: busy, idle, waiting on I/O, stolen by the hypervisor."""
    total = spent.total

    def share(seconds: float) -> str:
        return f"{100 * seconds / total:.0f} %" if total else "n/a"

    return (
        f"{total:.1f} CPU-s in all: busy {spent.busy:.1f} s ({share(spent.busy)}), idle {spent.idle:.1f} s "
        f"({share(spent.idle)}), waiting on I/O {spent.iowait:.1f} s, stolen by the host {spent.steal:.1f} s "
        f"({share(spent.steal)})"
    )


REFERENCE_ADDITIONS = 5_000_000


def reference_loop_seconds(additions: int = REFERENCE_ADDITIONS) -> float:
    """Seconds this machine takes for a fixed pure-Python loop, to compare hosts between runs (a
    run's figures move with the host's speed; the same-run /health baseline is the ratio's)."""
    started = time.perf_counter()
    total = 0
    for i in range(additions):
        total += i
    return time.perf_counter() - started
