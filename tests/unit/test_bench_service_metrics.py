"""The P1 bench's reading of the worker's own histograms: a phase's share, its quantile bounds."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.service_metrics import Buckets, describe_redemption_worker, parse_histograms, phase

WANTED = {"demo_seconds": {"service": "redemption", "route": "/redemptions"}}


def registry_with(observations: list[float], other_route: list[float]) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    histogram = Histogram(
        "demo_seconds", "demo", ["service", "route"], buckets=(0.01, 0.05, 0.1), registry=registry
    )
    for value in observations:
        histogram.labels("redemption", "/redemptions").observe(value)
    for value in other_route:
        histogram.labels("redemption", "/health").observe(value)
    return registry, histogram


def test_only_the_wanted_labels_are_read() -> None:
    registry, _ = registry_with([0.005, 0.02, 0.2], other_route=[0.001] * 50)
    read = parse_histograms(generate_latest(registry).decode(), WANTED)["demo_seconds"]
    assert read.count == 3
    assert read.counts == {0.01: 1, 0.05: 2, 0.1: 2, math.inf: 3}
    assert math.isclose(read.total, 0.225)


def test_a_phase_is_the_difference_and_its_quantiles_are_bucket_bounds() -> None:
    registry, histogram = registry_with([0.2] * 10, other_route=[])
    before = parse_histograms(generate_latest(registry).decode(), WANTED)
    for value in [0.005] * 98 + [0.03, 0.07]:
        histogram.labels("redemption", "/redemptions").observe(value)
    spent = phase(before, parse_histograms(generate_latest(registry).decode(), WANTED))["demo_seconds"]
    assert spent.count == 100  # the ten slow ones before the phase are not in it
    assert spent.quantile_bound(0.5) == 0.01
    assert spent.quantile_bound(0.99) == 0.05
    assert spent.quantile_bound(1.0) == 0.1
    assert spent.share_within(0.05) == 0.99


def test_an_empty_phase_says_so() -> None:
    assert math.isnan(Buckets({}, 0.0).quantile_bound(0.99))
    assert describe_redemption_worker({}) == "no figures (the worker's /metrics had none)"
