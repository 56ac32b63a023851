"""Prometheus metrics shared by every service (labelled by service or schema)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("passclear_http_requests_total", "HTTP requests", ["service", "route", "status"])
REQUEST_SECONDS = Histogram("passclear_http_request_seconds", "HTTP request latency", ["service", "route"])
EVENTS_OUT = Counter("passclear_events_published_total", "Events published from the outbox", ["service"])
EVENTS_IN = Counter("passclear_events_consumed_total", "Events applied by a consumer", ["consumer"])
DEAD_LETTERS = Counter("passclear_dead_letters_total", "Messages sent to the dead-letter topic", ["consumer"])
EVENTS_PRUNED = Counter(
    "passclear_outbox_pruned_total",
    "Published events deleted from the outbox after its retention",
    ["service"],
)
OUTBOX_LAG = Gauge("passclear_outbox_lag", "Outbox rows waiting for the relay", ["service"])
CONSUMER_LAG = Gauge("passclear_consumer_lag", "Messages behind the end of the topic", ["consumer"])
GROUP_COMMIT_SECONDS = Histogram(
    "passclear_group_commit_seconds",
    "A group-commit batch: its statement and commit, as the worker waited for them",
    ["service"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
GROUP_COMMIT_SIZE = Histogram(
    "passclear_group_commit_size",
    "Requests sharing a group-commit batch",
    ["service"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
EVENT_LOOP_LAG = Histogram(
    "passclear_event_loop_lag_seconds",
    "How late a timer set on the service's event loop fired: the wait every callback had then",
    ["service"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
