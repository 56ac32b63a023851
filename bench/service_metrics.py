"""What a service's own /metrics say about a benchmark phase: its Prometheus histograms read
before and after, and the phase's share of each (cumulative buckets subtract).

The P1 bench reads the redemption worker's time inside the service for POST /redemptions and its
group-commit batches (size, and the statement and commit's time): with the open loop's latency
seen by the client, they tell where the time went (waiting to be read and parsed, or for the
database)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Buckets:
    """A histogram's cumulative bucket counts by upper bound (the last is +Inf), and its sum."""

    counts: dict[float, float]
    total: float

    @property
    def count(self) -> float:
        return self.counts.get(math.inf, 0.0)

    def since(self, before: Buckets) -> Buckets:
        return Buckets(
            {le: n - before.counts.get(le, 0.0) for le, n in self.counts.items()}, self.total - before.total
        )

    def share_within(self, bound: float) -> float:
        """The share of observations at most `bound` (a bucket's upper bound)."""
        return self.counts.get(bound, 0.0) / self.count if self.count else math.nan

    def quantile_bound(self, q: float) -> float:
        """The upper bound of the bucket holding quantile `q`: "p99 <= this"."""
        if not self.count:
            return math.nan
        for le in sorted(self.counts):
            if self.counts[le] >= q * self.count:
                return le
        return math.inf


def read_histograms(url: str, wanted: dict[str, dict[str, str]]) -> dict[str, Buckets]:
    """The histograms named in `wanted` at `url`/metrics, each from its samples carrying the
    labels given for it."""
    return parse_histograms(httpx.get(f"{url}/metrics", timeout=10).text, wanted)


def parse_histograms(text: str, wanted: dict[str, dict[str, str]]) -> dict[str, Buckets]:
    found: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        labels = wanted.get(family.name)
        if family.type != "histogram" or labels is None:
            continue
        counts: dict[float, float] = {}
        total = 0.0
        for sample in family.samples:
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            if sample.name.endswith("_bucket"):
                counts[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
        if counts:
            found[family.name] = Buckets(counts, total)
    return found


def phase(before: dict[str, Buckets], after: dict[str, Buckets]) -> dict[str, Buckets]:
    empty = Buckets({}, 0.0)
    return {name: b.since(before.get(name, empty)) for name, b in after.items()}


def _ms(seconds: float) -> str:
    return "over the last bucket" if math.isinf(seconds) else f"{1000 * seconds:g} ms"


REDEMPTION_WORKER = {
    "passclear_http_request_seconds": {"service": "redemption", "route": "/redemptions"},
    "passclear_group_commit_seconds": {"service": "redemption"},
    "passclear_group_commit_size": {"service": "redemption"},
    "passclear_event_loop_lag_seconds": {"service": "redemption"},
}


def describe_redemption_worker(spent: dict[str, Buckets]) -> str:
    """The phase's POST /redemptions time inside the worker and its group-commit batches."""
    request = spent.get("passclear_http_request_seconds")
    seconds = spent.get("passclear_group_commit_seconds")
    sizes = spent.get("passclear_group_commit_size")
    parts = []
    if request and request.count:
        parts.append(
            f"POST /redemptions inside the worker (from the app's call, its headers parsed, to its answer handed to the server): "
            f"mean {1000 * request.total / request.count:.1f} ms, p50 <= {_ms(request.quantile_bound(0.5))}, "
            f"p99 <= {_ms(request.quantile_bound(0.99))}, {100 * request.share_within(0.05):.1f} % within 50 ms"
        )
    if seconds and sizes and seconds.count:
        parts.append(
            f"{seconds.count:.0f} group-commit batches of {sizes.total / sizes.count:.1f} requests on average, "
            f"each's statement and commit mean {1000 * seconds.total / seconds.count:.2f} ms, "
            f"p50 <= {_ms(seconds.quantile_bound(0.5))}, p99 <= {_ms(seconds.quantile_bound(0.99))}"
        )
    lag = spent.get("passclear_event_loop_lag_seconds")
    if lag and lag.count:
        parts.append(
            f"its event loop's lag (a 10 ms timer, {lag.count:.0f} times): mean {1000 * lag.total / lag.count:.2f} ms, "
            f"p50 <= {_ms(lag.quantile_bound(0.5))}, p99 <= {_ms(lag.quantile_bound(0.99))}, "
            f"{100 * (1 - lag.share_within(0.01)):.1f} % over 10 ms"
        )
    return "; ".join(parts) or "no figures (the worker's /metrics had none)"
