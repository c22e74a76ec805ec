"""Shared parts of the GPU check (``gpu_check.py``, ``gpu_check_wan.py``): the time budget, the JSON record written
as it grows, device timing (CUDA events, or the host clock for ``--device cpu``), CUDA-graph capture and one
runtime-backend run. Standalone: the library never imports this.

The CUDA calls are written against ``torch.cuda``'s documented API (events, graphs, memory statistics) and are
unverified until a GPU session runs them; everything else here is unit-tested on CPU
(tests/benchmarks/test_gpu_check.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Budget:
    """Wall-clock budget: no new case starts once ``seconds`` are spent, or when it needs more than is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock, self.start = float(seconds), clock, clock()
        self.stopped = False

    def spent(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.spent()

    def allows(self, need_s: float = 0.0) -> bool:
        ok = self.spent() + need_s <= self.seconds
        self.stopped |= not ok
        return ok

    def reason(self, need_s: float = 0.0) -> str:
        return f"time budget: {self.spent():.0f} s of {self.seconds:.0f} s spent, this case needs ~{need_s:.0f} s"


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    """benchmarks/_timing.py's summary (median, p90, min in milliseconds) with the number of runs."""
    if not times_ms:
        raise ValueError("no timed runs")
    from _timing import summary

    return {**summary(times_ms), "runs": len(times_ms)}


def runs_for(call_ms: float, seconds: float, lo: int, hi: int) -> int:
    """How many timed calls fit in ``seconds`` at ``call_ms`` each, kept within [lo, hi]: a 1 s transformer call gets
    a handful, a 5 ms one the full count."""
    if lo < 1 or hi < lo:
        raise ValueError(f"need 1 <= lo <= hi, got {lo}, {hi}")
    if call_ms <= 0:
        return hi
    return max(lo, min(hi, int(seconds * 1000.0 / call_ms)))


def skip(record: dict[str, Any], path: str, case: str | None, reason: str) -> None:
    record["skipped"].append({"path": path, "case": case, "reason": reason})
    print(f"skip {path}{' ' + case if case else ''}: {reason}", flush=True)


def write_record(record: dict[str, Any], out: Path) -> None:
    """Written after every path (and every row), so a run cut short (the shell's timeout) still leaves what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(out)


def add_row(record: dict[str, Any], row: dict[str, Any], out: Path | None) -> None:
    """One measured case: into the record, onto stdout, and the JSON rewritten at once (``out`` None: not written)."""
    record["rows"].append(row)
    print(json.dumps(row, default=str), flush=True)
    if out is not None:
        write_record(record, out)


def note(record: dict[str, Any], key: str, value: Any, out: Path | None) -> None:
    """A section of the record (a model's config, an export's figures), written at once like a row."""
    record[key] = value
    if out is not None:
        write_record(record, out)


class Device:
    """Where a path's PyTorch work runs: ``cuda`` (CUDA-event timing, CUDA graphs, the caching allocator's peak memory)
    or ``cpu`` (``--device cpu --tiny``: the host clock, no graphs, no device memory figures) to run the wiring here."""

    def __init__(self, kind: str) -> None:
        if kind not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {kind!r}")
        self.kind = kind

    @property
    def graphs(self) -> bool:
        return self.kind == "cuda"

    def sync(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize()

    def times(self, fn: Callable[[], Any], warmup: int, runs: int) -> list[float]:
        if self.kind == "cuda":
            return cuda_event_times(fn, warmup, runs)
        from _timing import call_times

        return call_times(fn, warmup, runs)

    def clock_ms(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        """One call on the host clock, synchronised on both sides: its result and milliseconds (first calls, estimates)."""
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return result, (time.perf_counter() - start) * 1e3

    def reset_peak(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def memory(self) -> dict[str, int]:
        """Peak allocated / reserved bytes since ``reset_peak`` and what is allocated now; empty on the CPU."""
        if self.kind != "cuda":
            return {}
        import torch

        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()), "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
                "allocated_bytes": int(torch.cuda.memory_allocated())}

    def empty_cache(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.empty_cache()


def cuda_event_times(fn: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Per-call device time in ms between CUDA events around ``fn``; synchronised after each call, so every call
    starts from an idle queue and its launch overhead is in the number."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def capture_graph(call: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
    """``call`` captured into a ``torch.cuda.CUDAGraph`` over its (static) input tensors: (replay, static output).
    Warm-up on a side stream first, as torch.cuda.graphs' documentation prescribes."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call()
    return graph.replay, out


def run_backend(backend: Any, model_file: Path, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]], warmup: int,
                runs: int) -> tuple[dict[str, float], Any]:
    """Host-clock latency of ``infer`` (host<->device copies included: the runtime's own interface) and the output."""
    from _timing import timed

    backend.load(model_file)
    binding = backend.allocate({k: v.shape for k, v in feeds.items()}, out_shapes)
    dtypes = backend.input_dtypes()
    for k, v in feeds.items():
        binding.inputs[k][...] = v.astype(dtypes.get(k, v.dtype))
    stats = timed(lambda: backend.infer(binding), warmup, runs)
    return stats, next(iter(binding.outputs.values())).astype("float32")
