"""The open-loop benchmark's arithmetic: latency from the intended send time, not the actual one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cpu import Process, group_of
from bench.open_loop import Request, Sample, parse_csv, percentile, summarize, write_requests

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
