"""Timing loops shared by the benchmark scripts (standalone: the library never imports this)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def call_times(fn: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Warm-up calls, then ``runs`` timed calls: each call's milliseconds on the host clock."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def timed(fn: Callable[[], Any], warmup: int, runs: int) -> dict[str, float]:
    """Warm-up calls, then ``runs`` timed calls; median, p90 and min in milliseconds."""
    return summary(call_times(fn, warmup, runs))


def summary(times_ms: list[float]) -> dict[str, float]:
    """Median, p90 (nearest rank) and min of per-call times in milliseconds."""
    times = sorted(times_ms)
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0]}


def time_interleaved(calls: dict[str, Callable[[], Any]], warmup: int, runs: int, block: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, run A, B, C, ... in turn, so drifting machine load hits every one alike.

    ``block`` > 1 runs each call ``block`` times in a row per turn and times only the repeats: a sampler calls its
    UNet several times back to back, with the weights still in cache, while strict A, B, C turns make every call
    start cold, which favours the graph with fewer weight bytes (an int8 or a pruned one). ``runs`` timed samples
    per call either way.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    per_turn = max(1, block - 1)
    while min(len(v) for v in times.values()) < runs:
        for name, call in calls.items():
            if block > 1:
                call()  # back in cache: the untimed first call of the block
            for _ in range(per_turn):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: v[:runs] for name, v in times.items()}
