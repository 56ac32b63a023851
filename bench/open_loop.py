"""Open-loop load at a constant offered rate, with latency counted from each request's intended
send time (corrected for coordinated omission, as wrk2 does), for benchmarks of HTTP services.

The load comes from bench/openloop, a small Go program (standard library only), built with the
machine's Go on first use and cached under `.local/bin/` (keyed by its source, so an edit
rebuilds it). Not Python: the generator would take the services' CPU. Not vegeta, the ready-made
open-loop tool: it cost ~0.11 ms of CPU per request here (a third of a core at 3,000/s on a
2-core machine), against ~0.04 ms for this one on one thread, close to wrk's closed loop.

Request k is due at start + k / rate, whatever the server does; requests go over a fixed pool of
keep-alive connections (at most one in flight on each, as with wrk2's -c), and one due while every
connection is busy waits for one, so its latency counts from when it was due, not from when it
could be sent: the wait a closed loop would hide is measured.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).resolve().parent / "openloop"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Sample:
    seq: int
    due_ns: int  # from the run's start
    sent_ns: int
    done_ns: int
    status: int  # 0: no answer (transport error or timeout)


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float  # offered, requests per second
    offered_s: float  # for how long
    sent: int
    codes: dict[int, int]
    span_s: float  # from the run's start to the last answer
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    sent_p99_ms: float  # p99 of the time from when each request was sent (what a closed loop sees)
    max_late_ms: float  # the longest a due request waited to be sent (busy connections, or CPU)
    p99_by_second: tuple[float, ...] = ()  # ms, of the requests due in each second of the run
    started: float = 0.0  # time.monotonic() when the generator was started (its t = 0, within ms)

    def count(self, status: int) -> int:
        return self.codes.get(status, 0)

    def per_second(self, status: int) -> float:
        """Answers with `status` per second of the offered period (all of them answered within
        `span_s`, which exceeds it by the last answer's latency)."""
        return self.count(status) / self.offered_s


def generator() -> Path:
    """bench/openloop's binary, built once per version of its source into `.local/bin/`."""
    digest = hashlib.sha256(
        b"".join(f.read_bytes() for f in [SOURCE / "go.mod", *sorted(SOURCE.glob("*.go"))])
    ).hexdigest()
    binary = ROOT / ".local" / "bin" / f"openloop-{digest[:12]}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise SystemExit("the open-loop benchmark builds its load generator with Go: put `go` on the PATH")
    print(f"building the open-loop load generator (once; {binary})", flush=True)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openloop-build-") as out:
        # No dependencies: nothing is fetched. GOFLAGS cleared so a caller's -mod=... cannot interfere.
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "", "GOWORK": "off"}
        subprocess.run([go, "build", "-o", f"{out}/openloop", "."], cwd=SOURCE, env=env, check=True)
        shutil.move(f"{out}/openloop", binary)
    return binary


def write_requests(path: Path, base_url: str, requests: Iterable[Request]) -> int:
    """The generator's input: each request as the raw HTTP/1.1 bytes it sends, "<length>\\n<bytes>"."""
    host = urlsplit(base_url).netloc
    n = 0
    with path.open("wb") as out:
        for r in requests:
            head = f"{r.method} {r.path} HTTP/1.1\r\nHost: {host}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in r.headers.items())
            head += f"Content-Length: {len(r.body)}\r\n\r\n"
            raw = head.encode("latin-1") + r.body
            out.write(b"%d\n" % len(raw))
            out.write(raw)
            n += 1
        # On disk before the run: its ~70 MB (P1) left to the kernel were written out ~30 s into
        # the measured run, with the services' own writes, and every commit waited behind them.
        out.flush()
        os.fsync(out.fileno())
    return n


def attack(
    requests: Path, base_url: str, *, rate: int, seconds: float, connections: int, work: Path, name: str
) -> OpenLoopResult:
    """`rate` requests per second for `seconds` over `connections` keep-alive connections, the
    requests taken in order, each once; then the answers, timed from when each was due."""
    results = work / f"{name}.csv"
    started = time.monotonic()
    subprocess.run(
        [
            str(generator()),
            f"-addr={urlsplit(base_url).netloc}",
            f"-rate={rate}",
            f"-duration={seconds}s",
            f"-connections={connections}",
            f"-requests={requests}",
            f"-out={results}",
            "-timeout=10s",
        ],
        # One thread, as wrk -t1: measured, half the CPU of two (no cross-thread wake-ups).
        env={**os.environ, "GOMAXPROCS": "1"},
        check=True,
    )
    return dataclasses.replace(
        summarize(parse_csv(results.read_text()), rate=rate, seconds=seconds), started=started
    )


def parse_csv(text: str) -> list[Sample]:
    """The generator's results: seq, due, sent, done (ns from the start), status."""
    return [Sample(*map(int, row)) for row in csv.reader(io.StringIO(text)) if row]


def summarize(samples: Sequence[Sample], *, rate: int, seconds: float) -> OpenLoopResult:
    if not samples:
        raise ValueError("no request was sent")
    latencies = sorted(s.done_ns - s.due_ns for s in samples)
    from_sent = sorted(s.done_ns - s.sent_ns for s in samples)
    return OpenLoopResult(
        rate=float(rate),
        offered_s=seconds,
        sent=len(samples),
        codes=dict(Counter(s.status for s in samples)),
        span_s=max(s.done_ns for s in samples) / 1e9,
        p50_ms=percentile(latencies, 50) / 1e6,
        p90_ms=percentile(latencies, 90) / 1e6,
        p99_ms=percentile(latencies, 99) / 1e6,
        max_ms=latencies[-1] / 1e6,
        sent_p99_ms=percentile(from_sent, 99) / 1e6,
        max_late_ms=max(s.sent_ns - s.due_ns for s in samples) / 1e6,
        p99_by_second=by_second(samples),
    )


def by_second(samples: Sequence[Sample]) -> tuple[float, ...]:
    """p99 latency (ms, from the intended send time) of the requests due in each second."""
    seconds: dict[int, list[int]] = {}
    for s in samples:
        seconds.setdefault(s.due_ns // 1_000_000_000, []).append(s.done_ns - s.due_ns)
    return tuple(
        percentile(sorted(seconds.get(i, [0])), 99) / 1e6 for i in range(max(seconds) + 1 if seconds else 0)
    )


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest rank: the smallest value that at least q % of the values do not exceed."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
