"""The open-loop benchmark's arithmetic: latency from the intended send time, not the actual one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import stalls
from bench.cpu import Process, group_of
from bench.open_loop import Request, Sample, by_second, parse_csv, percentile, summarize, write_requests

MS = 1_000_000


def on_time(seq: int, latency_ms: float, status: int = 201) -> Sample:
    due = seq * MS  # one request a millisecond
    return Sample(seq, due, due, due + int(latency_ms * MS), status)


def test_on_schedule_latency_is_the_answer_time():
    result = summarize([on_time(n, 2.0) for n in range(100)], rate=1000, seconds=0.1)
    assert result.p50_ms == result.p99_ms == result.max_ms == result.sent_p99_ms == 2.0
    assert result.max_late_ms == 0.0
    assert result.sent == 100 and result.count(201) == 100


def test_a_request_sent_late_counts_its_wait():
    # Every connection was busy: requests 50..59 went out at 60 ms, each answered in 1 ms.
    samples = [on_time(n, 1.0) for n in range(100)]
    for n in range(50, 60):
        samples[n] = Sample(n, n * MS, 60 * MS, 61 * MS, 201)
    result = summarize(samples, rate=1000, seconds=0.1)
    assert result.sent_p99_ms == 1.0  # what timing from the send (a closed loop) would report
    assert result.max_ms == pytest.approx(11.0)  # request 50 was due at 50 ms, answered at 61
    assert result.p99_ms == pytest.approx(10.0)
    assert result.max_late_ms == pytest.approx(10.0)


def test_rates_count_answers_per_second_offered():
    samples = [on_time(n, 1.0) for n in range(999)] + [on_time(999, 1000.0, status=0)]  # one timed out
    result = summarize(samples, rate=1000, seconds=1.0)
    assert result.codes == {201: 999, 0: 1}
    assert result.per_second(201) == pytest.approx(999.0)
    assert result.span_s == pytest.approx(1.999)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7], 99) == 7


def test_parse_results():
    assert parse_csv("7,1000,1500,3000,201\n8,2000,2000,9000,0\n") == [
        Sample(7, 1000, 1500, 3000, 201),
        Sample(8, 2000, 2000, 9000, 0),
    ]


def test_requests_are_raw_http_with_their_length(tmp_path: Path):
    path = tmp_path / "requests"
    body = b'{"a":1}'
    n = write_requests(
        path, "http://127.0.0.1:18202", [Request("POST", "/r", {"Authorization": "Bearer x"}, body)] * 2
    )
    raw = (
        b"POST /r HTTP/1.1\r\nHost: 127.0.0.1:18202\r\nAuthorization: Bearer x\r\n"
        b"Content-Length: 7\r\n\r\n" + body
    )
    assert n == 2
    assert path.read_bytes() == (b"%d\n" % len(raw) + raw) * 2


def test_cpu_groups_follow_the_process_tree():
    table = {
        10: Process(10, 1, "python -m uvicorn services.redemption.app:app", 0, 0),
        11: Process(11, 10, "python -B -c from multiprocessing.spawn import spawn_main", 0, 0),
        20: Process(20, 1, "postgres: postgres bench_x 127.0.0.1(5) idle", 0, 0),
        21: Process(21, 1, "postgres: walwriter", 0, 0),
        30: Process(30, 1, "/usr/bin/java -cp libs/* kafka.Kafka server.properties", 0, 0),
        40: Process(40, 1, "python -m pytest tests/e2e", 0, 0),
    }
    commands = {"bench_x": "postgres (this database)", "postgres:": "postgres (shared)"}
    groups = {pid: group_of(pid, table, {10: "redemption"}, commands) for pid in table}
    assert groups == {
        10: "redemption",
        11: "redemption",
        20: "postgres (this database)",
        21: "postgres (shared)",
        30: "kafka",
        40: "other",
    }


def test_cpu_is_the_difference_for_a_process_whose_command_line_changed(monkeypatch: pytest.MonkeyPatch):
    # A Postgres backend rewrites its command line with its state; its pid and start stay.
    from bench import cpu

    snapshots = iter(
        [
            {7: Process(7, 1, "postgres: postgres bench_x 127.0.0.1(5) idle", 100.0, 0.0, started=42)},
            {7: Process(7, 1, "postgres: postgres bench_x 127.0.0.1(5) SELECT", 103.5, 0.0, started=42)},
        ]
    )
    monkeypatch.setattr(cpu, "processes", lambda: next(snapshots))
    meter = cpu.CpuMeter({}, {"bench_x": "postgres (this database)"})
    meter.start()
    assert meter.stop() == {"postgres (this database)": pytest.approx(3.5)}


def test_p99_by_second_of_the_due_time():
    # 3 s at 1,000/s: the second second has a burst of slow answers (its last 20 requests, 300 ms).
    samples = [on_time(n, 300.0 if 1980 <= n < 2000 else 2.0) for n in range(3000)]
    assert by_second(samples) == (2.0, 300.0, 2.0)
    assert summarize(samples, rate=1000, seconds=3).p99_by_second == (2.0, 300.0, 2.0)


def test_bad_seconds_are_reported_with_what_the_machine_did_in_them():
    started = 100.0
    # I/O pressure and writes accumulate only in the second second (t = 101..102).
    samples = [
        stalls.Sample(
            started + t / 10,
            io_full_us=0 if t <= 10 else 150_000,
            cpu_some_us=t * 1000,
            written_bytes=0 if t <= 10 else 300_000_000,
        )
        for t in range(0, 31)
    ]
    worst = stalls.worst_seconds((20.0, 220.0, 30.0), samples, started, over_ms=50)
    assert [(s.index, s.p99_ms) for s in worst] == [(1, 220.0)]
    assert worst[0].io_stalled_ms == pytest.approx(150.0)
    assert worst[0].written_mb == pytest.approx(300.0)
    text = stalls.describe_seconds((20.0, 220.0, 30.0), worst, over_ms=50)
    assert text.startswith(
        "1 of 3 seconds had a p99 over 50 ms; the median of the other seconds' p99 is 30.0 ms"
    )
    assert "1 s: p99 220 ms, all tasks stalled on I/O 150 ms" in text
    assert stalls.describe_seconds((20.0, 30.0), [], over_ms=50).startswith("0 of 2 seconds")
    assert stalls.describe_writes(samples, started, 3) == (
        "300 MB written to disk in all; the busiest second (1 s) wrote 300 MB, "
        "with all tasks stalled on I/O 150 ms in it"
    )
    assert stalls.describe_writes([], started, 3) == "no disk statistics on this machine"


def test_the_disk_flush_probe_times_each_flush(tmp_path: Path):
    probe = stalls.disk_flush_probe(tmp_path, seconds=0.05, every=0.001)
    assert probe.flushes > 0 and 0 < probe.p50_ms <= probe.p99_ms <= probe.max_ms
    assert probe.over_50_ms == 0 or probe.max_ms > 50
    assert list(tmp_path.iterdir()) == []  # its file is gone
    assert stalls.describe_probe(probe, 0.05).startswith(f"{probe.flushes} flushes (8 kB write + fdatasync")


def test_postgres_figures_per_redemption_and_no_flush_rate_where_the_server_counts_none():
    before = {
        "wal_bytes": 0,
        "wal_records": 0,
        "wal_fpi": 0,
        "wal_flushes": 0,
        "pages_added": 0,
        "commits": 50,
    }
    after = {
        "wal_bytes": 2_430_000,
        "wal_records": 17_500,
        "wal_fpi": 3,
        "wal_flushes": 6_000,
        "pages_added": 600,
        "commits": 250,
    }
    text = stalls.describe_postgres(before, after, 1000, 10)
    assert text.startswith("WAL 2.43 kB per accepted redemption (17.5 records, 3 full-page images in all)")
    assert "600 WAL flushes/s" in text and "0.5 MB/s of new table and index pages" in text
    assert text.endswith("this database: 20 commits/s, 5.0 accepted redemptions per commit")
    assert "flushes" not in stalls.describe_postgres(before, {**after, "wal_flushes": 0}, 1000, 10)
