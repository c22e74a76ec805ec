"""Timing loops shared by the benchmark scripts (standalone: the library never imports this)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], warmup: int, runs: int) -> dict[str, float]:
    """Warm-up calls, then ``runs`` timed calls; median, p90 and min in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0]}


def time_interleaved(calls: dict[str, Callable[[], Any]], warmup: int, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, run A, B, C, ... in turn, so drifting machine load hits every one alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times
