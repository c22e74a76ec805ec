"""The bench's shared pieces, torch-free: timing loops, per-stage entries with FLOPs against a peak, the machine
record, the composition of a video from its stages, and the terminal table."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from turbo_edge.spec import host

STAGES = ("text_encoder", "unet", "vae_decoder")
STAGE_LABELS = {"text_encoder": "text encoder", "unet": "UNet (one call)", "vae_decoder": "VAE decode", "end_to_end": "end to end"}
# The flags that decide a CPU's peak and its int8 / bf16 kernels.
FLAGS_OF_INTEREST = ("sse2", "avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
                     "avx512_vp2intersect", "amx_tile", "amx_bf16", "amx_int8")


def summary(times_ms: list[float]) -> dict[str, float]:
    """Median, p90 (nearest rank) and min of per-call times in milliseconds (the benchmarks' _timing.summary rule)."""
    times = sorted(times_ms)
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "min_ms": times[0]}


def time_calls(fn: Callable[[], Any], warmup: int, runs: int, device_ms: Callable[[Callable[[], Any]], float] | None = None) -> dict[str, Any]:
    """``warmup`` untimed calls, then ``runs`` timed ones: host-clock stats, and device-clock stats where ``device_ms``
    (a CUDA-event timer of one call) is given."""
    for _ in range(warmup):
        fn()
    host_ms, dev_ms = [], []
    for _ in range(runs):
        start = time.perf_counter()
        if device_ms is None:
            fn()
        else:
            dev_ms.append(device_ms(fn))
        host_ms.append((time.perf_counter() - start) * 1e3)
    out: dict[str, Any] = summary(dev_ms if dev_ms else host_ms)
    out["runs"] = runs
    if dev_ms:
        out["host"] = summary(host_ms)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set so far (``ru_maxrss``, KiB on Linux), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def machine_info(threads: int) -> dict[str, Any]:
    """What the figures depend on: the CPU (model, vendor, the flags of interest), the cores, threads and load."""
    flags = host.cpu_flags() or frozenset()
    peak = host.cpu_peak_flops("fp32", cores=threads)
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
        "cores": host.available_cores(), "threads": threads, "cpu_model": host.cpu_model_name(), "cpu_vendor": host.cpu_vendor(),
        "cpu_mhz": host.cpu_mhz(), "flags": [f for f in FLAGS_OF_INTEREST if f in flags],
        "int8_dot_product": host.host_int8_dot_flags(), "loadavg_at_start": list(os.getloadavg()),
        "peak_gflops": None if peak is None else peak["flops_per_s"] / 1e9, "formula": None if peak is None else peak["basis"],
    }


def stage_entry(stage: str, stats: dict[str, Any], calls: int, flops: int | None, peak: dict[str, Any] | None) -> dict[str, Any]:
    """One stage's figures: its per-call times, calls per generate call, GFLOP per call, achieved GFLOP/s, % of peak."""
    achieved = None if not flops else flops / (stats["median_ms"] / 1e3)
    return {
        "stage": stage, "calls": calls, **{k: stats[k] for k in ("median_ms", "p90_ms", "min_ms", "runs")},
        **({"host": stats["host"]} if "host" in stats else {}),
        "gflop": None if flops is None else flops / 1e9, "achieved_gflops": None if achieved is None else achieved / 1e9,
        "peak_gflops": None if peak is None else peak["flops_per_s"] / 1e9,
        "pct_of_peak": None if achieved is None or peak is None else 100.0 * achieved / peak["flops_per_s"],
    }


def composed_ms(stages: list[dict[str, Any]]) -> float:
    """A generate call composed from its stages: text encoder calls + steps x UNet call + VAE decode, by medians."""
    return sum(s["median_ms"] * s["calls"] for s in stages if s["stage"] in STAGES)


def finish_row(row: dict[str, Any], stages: list[dict[str, Any]], e2e: dict[str, Any] | None, composed_only: bool) -> dict[str, Any]:
    """Add end to end (measured, or composed from the stages when ``composed_only``), the composition check, each
    stage's share of end to end, and videos per minute."""
    composed = composed_ms(stages)
    measured = None if e2e is None else e2e["median_ms"]
    if composed_only:
        total = {"stage": "end_to_end", "calls": 1, "median_ms": composed, "p90_ms": None, "min_ms": None, "runs": 0,
                 "source": "composed from the stage medians"}
    else:
        total = {"stage": "end_to_end", "calls": 1, **e2e, "source": "measured"}
    flops = [s["gflop"] * s["calls"] for s in stages if s["gflop"] is not None]
    total["gflop"] = sum(flops) if len(flops) == len(stages) else None
    total["achieved_gflops"] = None if total["gflop"] is None else total["gflop"] / (total["median_ms"] / 1e3)
    for s in stages:
        s["share_of_end_to_end"] = s["median_ms"] * s["calls"] / total["median_ms"]
    total["share_of_end_to_end"] = 1.0
    row.update(
        end_to_end_ms=total["median_ms"], end_to_end_source=total["source"], composed_ms=composed, measured_ms=measured,
        measured_runs=None if e2e is None else e2e["runs"],
        composition_rel_diff=None if measured is None else composed / measured - 1.0,
        videos_per_min=row["batch"] * 60_000.0 / total["median_ms"], stages=[*stages, total],
    )
    return row


# ------------------------------------------------------------------ the terminal table


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def format_table(record: dict[str, Any]) -> str:
    """One block per row: a line naming it, then stage / median / p90 / min / share / GFLOP / GFLOP/s / % of peak."""
    lines = []
    shapes = record["shapes"]
    for row in record["rows"]:
        lines.append(f"{row['row']}: {row['steps']} steps, batch {row['batch']}, {shapes['frames']}x{shapes['height']}x{shapes['width']}, "
                     f"{row['threads']} thread(s), timing {row['timing']}")
        header = ["stage", "calls", "median ms", "p90 ms", "min ms", "share", "GFLOP", "GFLOP/s", "% peak"]
        table = [header]
        for s in row["stages"]:
            table.append([STAGE_LABELS[s["stage"]], str(s["calls"]), _f(s["median_ms"], 2), _f(s["p90_ms"], 2), _f(s["min_ms"], 2),
                          f"{100 * s['share_of_end_to_end']:.0f} %", _f(s["gflop"], 3), _f(s.get("achieved_gflops")),
                          _f(s.get("pct_of_peak"))])
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
        check = ""
        if row.get("composition_rel_diff") is not None:
            check = (f"; composed {_f(row['composed_ms'], 1)} ms vs measured {_f(row['measured_ms'], 1)} ms "
                     f"({100 * row['composition_rel_diff']:+.1f} %)")
        device = f"; device memory {_f(row['device_memory_mb'], 0)} MB" if row.get("device_memory_mb") is not None else ""
        lines.append(f"  videos/min {_f(row['videos_per_min'], 2)}; peak RSS {_f(row['peak_rss_mb'], 0)} MB{device}{check}")
        lines.append("")
    peak = record["machine"].get("formula")
    lines.append(f"peak: {peak}" if peak else "peak: unknown (no /proc/cpuinfo flags)")
    return "\n".join(lines)
