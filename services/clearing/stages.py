"""Where closing a window and building its payout file spend their time, per stage.

Cumulative seconds per stage on /metrics (`passclear_clearing_stage_seconds_total`), so that a
benchmark or an operator can see which stage a slow close is slow in."""

from __future__ import annotations

import time
from collections import defaultdict

from prometheus_client import Counter

STAGE_SECONDS = Counter(
    "passclear_clearing_stage_seconds", "Wall time of window close and payout stages", ["stage"]
)


class Stopwatch:
    """Laps: the time since the previous lap goes to the stage named (awaits included)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.spent: dict[str, float] = defaultdict(float)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.spent[stage] += now - self._last
        self._last = now

    def record(self) -> dict[str, float]:
        for stage, seconds in self.spent.items():
            STAGE_SECONDS.labels(stage).inc(seconds)
        return {stage: round(seconds, 3) for stage, seconds in self.spent.items()}
