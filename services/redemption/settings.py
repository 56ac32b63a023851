from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class RedemptionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDEMPTION_")
    # How long a site may reverse its own redemption; finance may reverse at any time.
    site_reversal_hours: int = 72
    # "monthly": windows close at the end of each calendar month (Europe/Paris); "manual": only
    # when finance closes them.
    window_period: str = "monthly"
    window_check_seconds: float = 30.0
    # The outbox relay's pause after a batch that emptied the outbox. Without it, at 3,000
    # redemptions/s the relay ran ~37 batches of ~80 events a second, each a read, a produce
    # request per partition and a commit, and clearing took as many small fetches; events reach
    # Kafka up to this much later (a backlog is still read without pause). Not longer: at 0.25 s
    # (P1, two runs each, alternated) Kafka and clearing together took 0.065 and 0.058 ms of CPU
    # a redemption (one figure a run) against 0.096 and 0.086, but the p99 rose, 60.8 and 37.0 ms
    # against 49.8 and 27.1: each relay batch, five times bigger, holds the worker's event loop longer (its lag over
    # 10 ms 1.3 and 0.3 % of the time, against 0.6 and 0.1 %).
    relay_linger_seconds: float = 0.05
    # How long a redemption without an Idempotency-Key may wait for others to share its statement
    # and commit (group commit). Postgres pays a fixed CPU cost per statement and commit
    # (bench/redeem_call.py). P1 bench at 3,000/s, one run each: no wait, 4.3 redemptions a commit,
    # Postgres 0.159 ms a redemption, p50 5.5 ms; 2 ms, 8.2 a commit, 0.128 ms, p50 9.4 ms, and a
    # p99 no better (74.8 against 69.0 ms). Off by default: a site's answer comes first.
    group_commit_linger_seconds: float = 0.0
