"""What the machine was doing in the seconds an open loop's latency went bad: a sampler of the
kernel's pressure stall information (PSI) and disk writes, read every 100 ms during a phase, and
the Postgres write statistics of the phase.

A tail can come from the request path or from the machine under it. On this 2-core VM the P1
tail came in whole-second bursts: every request of that second slow, while p99 over the other
seconds stayed ~20-40 ms. `worst_seconds` puts each bad second next to how long the machine's
tasks all waited on I/O in it (PSI "full") and how much it wrote, so a bench's output says which
it was. Linux only: elsewhere the sampler records nothing and the report says so.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg

PROC = Path("/proc")
SECTOR = 512
SHOWN = 8  # bad seconds listed, the worst by p99


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    io_full_us: int  # PSI: time every non-idle task was stalled on I/O, cumulative
    cpu_some_us: int  # PSI: time at least one task waited for a CPU, cumulative
    written_bytes: int  # sectors written to the block devices, cumulative


def read_sample() -> Sample | None:
    try:
        io = (PROC / "pressure" / "io").read_text().splitlines()
        cpu = (PROC / "pressure" / "cpu").read_text().splitlines()
        disks = (PROC / "diskstats").read_text().splitlines()
    except OSError:
        return None
    written = 0
    for line in disks:
        fields = line.split()
        # Whole devices only (a partition's writes are also its disk's); no loop or RAM disks.
        if (
            len(fields) > 9
            and (Path("/sys/block") / fields[2]).exists()
            and not fields[2].startswith(("loop", "ram"))
        ):
            written += int(fields[9]) * SECTOR
    return Sample(time.monotonic(), _total(io, "full"), _total(cpu, "some"), written)


def _total(lines: list[str], kind: str) -> int:
    for line in lines:
        if line.startswith(kind):
            return int(line.rsplit("total=", 1)[1])
    return 0


class Sampler:
    """Samples every `every` seconds in a thread, from `start()` to `stop()`."""

    def __init__(self, every: float = 0.1) -> None:
        self._every = every
        self._samples: list[Sample] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._done.set()
        self._thread.join()
        return self._samples

    def _run(self) -> None:
        while not self._done.is_set():
            if (sample := read_sample()) is None:
                return
            self._samples.append(sample)
            self._done.wait(self._every)


@dataclass(frozen=True)
class Second:
    index: int  # seconds after the phase started
    p99_ms: float
    io_stalled_ms: float | None
    cpu_waited_ms: float | None
    written_mb: float | None


def worst_seconds(
    p99_by_second: Sequence[float], samples: Sequence[Sample], started: float, *, over_ms: float
) -> list[Second]:
    """The seconds whose p99 exceeded `over_ms`, each with what the machine did in it."""
    out = []
    for index, p99 in enumerate(p99_by_second):
        if p99 <= over_ms:
            continue
        inside = [s for s in samples if started + index - 0.05 <= s.at <= started + index + 1.05]
        if len(inside) < 2:
            out.append(Second(index, p99, None, None, None))
            continue
        first, last = inside[0], inside[-1]
        out.append(
            Second(
                index,
                p99,
                (last.io_full_us - first.io_full_us) / 1000,
                (last.cpu_some_us - first.cpu_some_us) / 1000,
                (last.written_bytes - first.written_bytes) / 1e6,
            )
        )
    return out


def describe_writes(samples: Sequence[Sample], started: float, seconds: int) -> str:
    """The phase's disk writes: in all, and its busiest second (the kernel's writeback of what the
    phase dirtied comes out as one such second, ~30 s in), with the I/O stall in that second."""
    by_second = []
    for index in range(seconds):
        inside = [s for s in samples if started + index - 0.05 <= s.at <= started + index + 1.05]
        if len(inside) >= 2:
            first, last = inside[0], inside[-1]
            by_second.append(
                (last.written_bytes - first.written_bytes, index, (last.io_full_us - first.io_full_us) / 1000)
            )
    if not by_second:
        return "no disk statistics on this machine"
    written, index, stalled = max(by_second)
    total = samples[-1].written_bytes - samples[0].written_bytes
    return (
        f"{total / 1e6:.0f} MB written to disk in all; the busiest second ({index} s) wrote "
        f"{written / 1e6:.0f} MB, with all tasks stalled on I/O {stalled:.0f} ms in it"
    )


def describe_seconds(p99_by_second: Sequence[float], worst: Sequence[Second], *, over_ms: float) -> str:
    others = sorted(p for p in p99_by_second if p <= over_ms)
    median_other = others[len(others) // 2] if others else float("nan")
    head = (
        f"{len(worst)} of {len(p99_by_second)} seconds had a p99 over {over_ms:.0f} ms; "
        f"the median of the other seconds' p99 is {median_other:.1f} ms"
    )
    if not worst:
        return head
    shown = sorted(sorted(worst, key=lambda s: -s.p99_ms)[:SHOWN], key=lambda s: s.index)
    if len(shown) < len(worst):
        head += f" ({len(shown)} worst shown)"
    parts = []
    for s in shown:
        if s.io_stalled_ms is None:
            parts.append(f"{s.index} s: p99 {s.p99_ms:.0f} ms")
        else:
            parts.append(
                f"{s.index} s: p99 {s.p99_ms:.0f} ms, all tasks stalled on I/O {s.io_stalled_ms:.0f} ms, "
                f"some waiting for a CPU {s.cpu_waited_ms:.0f} ms, {s.written_mb:.0f} MB written to disk"
            )
    return head + " — " + "; ".join(parts)


WAL_SQL = "SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes FROM pg_stat_wal"
COMMITS_SQL = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
IO_SQL = (
    "SELECT coalesce(sum(fsyncs) FILTER (WHERE object = 'wal'), 0)::bigint AS wal_flushes,"
    " coalesce(sum(extends) FILTER (WHERE object = 'relation'), 0)::bigint AS pages_added"
    " FROM pg_stat_io"
)


async def _postgres_counters(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        counters = dict(await conn.fetchrow(WAL_SQL))
        counters["commits"] = await conn.fetchval(COMMITS_SQL)
        with suppress(asyncpg.PostgresError):  # pg_stat_io: PostgreSQL 16 on (its WAL rows: 18 on)
            counters |= dict(await conn.fetchrow(IO_SQL))
        return {k: int(v) for k, v in counters.items()}
    finally:
        await conn.close()


def postgres_counters(url: str) -> dict[str, int]:
    """The server's cumulative WAL and I/O counters (the whole server: every database), and the
    commits of the database `url` names."""
    return asyncio.run(_postgres_counters(url))


def describe_postgres(before: dict[str, int], after: dict[str, int], accepted: int, seconds: float) -> str:
    d = {k: after[k] - before[k] for k in before}
    per = max(accepted, 1)
    text = (
        f"WAL {d['wal_bytes'] / per / 1000:.2f} kB per accepted redemption "
        f"({d['wal_records'] / per:.1f} records, {d['wal_fpi']} full-page images in all)"
    )
    if d.get("wal_flushes"):  # pg_stat_io counts WAL flushes from PostgreSQL 18 on
        text += f", {d['wal_flushes'] / seconds:.0f} WAL flushes/s"
    if "pages_added" in d:
        text += f", {d['pages_added'] * 8192 / 1e6 / seconds:.1f} MB/s of new table and index pages (written out later by the kernel)"
    # Each group-commit batch is one commit; the relay's and the projection's commits are a few more.
    text += (
        f"; this database: {d['commits'] / seconds:.0f} commits/s, "
        f"{accepted / max(d['commits'], 1):.1f} accepted redemptions per commit"
    )
    return text


@dataclass(frozen=True)
class FlushProbe:
    flushes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_50_ms: int


def disk_flush_probe(directory: Path, *, seconds: float = 10.0, every: float = 0.002) -> FlushProbe:
    """What one durable commit costs the disk on its own: an 8 kB write and an fdatasync every
    `every` seconds (a WAL flush), in `directory` (on the database's disk), for `seconds`."""
    path = directory / f".flush-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    latencies = []
    try:
        block = b"\0" * 8192
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            os.pwrite(fd, block, (n % 1024) * len(block))
            started = time.perf_counter()
            os.fdatasync(fd)
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1
            time.sleep(every)
    finally:
        os.close(fd)
        path.unlink()
    latencies.sort()
    return FlushProbe(
        len(latencies),
        latencies[len(latencies) // 2],
        latencies[max(0, -(-99 * len(latencies) // 100) - 1)],
        latencies[-1],
        sum(1 for ms in latencies if ms > 50),
    )


def describe_probe(probe: FlushProbe, seconds: float) -> str:
    return (
        f"{probe.flushes} flushes (8 kB write + fdatasync every 2 ms for {seconds:.0f} s): p50 {probe.p50_ms:.2f} ms, "
        f"p99 {probe.p99_ms:.2f} ms, max {probe.max_ms:.1f} ms, {probe.over_50_ms} over 50 ms"
    )
