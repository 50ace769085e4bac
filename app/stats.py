"""Hot-path measurements kept in plain Python numbers; `app.metrics` exports them at scrape time.

Counting a quote or a frame must cost an attribute increment, not a prometheus_client call (a lock
and a label lookup each), so the app keeps these small structures and the metrics collector reads
them only when Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Sequence

# Seconds: from a few ms (idle server) to the target's order of magnitude and beyond.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """Cumulative-at-export histogram: `observe` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class LoopLag:
    """How late the event loop wakes a sleeping task: the time every other coroutine waits."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.last = 0.0
        self.worst = 0.0  # the largest delay since `take_worst` was last called
        self.histogram = Histogram()

    def take_worst(self) -> float:
        """The largest delay since the previous call (a scrape), and start over."""
        worst, self.worst = self.worst, 0.0
        return worst

    async def run(self) -> None:
        # A stall is seen only if it covers a wake-up time: sampling every `interval` seconds
        # sees every stall longer than that, and shorter ones by chance.
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, time.perf_counter() - started - self.interval)
            self.worst = max(self.worst, self.last)
            self.histogram.observe(self.last)
