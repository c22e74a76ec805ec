"""What this machine's CPU offers, read from /proc/cpuinfo (Linux); torch-free, for the runtime, export and benchmarks."""

from __future__ import annotations

from pathlib import Path


def read_cpuinfo() -> str:
    """The text of /proc/cpuinfo, or "" where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The first processor's feature flags (x86 ``flags`` line), or None where the text has no such line."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    return None if line is None else frozenset(line.split(":", 1)[1].split())


def cpu_mhz(cpuinfo: str | None = None) -> float | None:
    """The first processor's reported clock in MHz, or None."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return next((float(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("cpu MHz")), None)


# /proc/cpuinfo flags of x86 int8 dot-product instructions with 32-bit accumulation (no 16-bit saturation).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def host_int8_dot_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The INT8_DOT_FLAGS this machine's CPU has (``cpuinfo``: /proc/cpuinfo text, default this machine's);
    None where nothing is known (not x86 Linux: no flags line)."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else [f for f in INT8_DOT_FLAGS if f in flags]


def host_overflow_fix(cpuinfo: str | None = None) -> str:
    """NNCF overflow fix for int8 graphs run on this machine's CPU: "enable" without VNNI, else "first_layer"."""
    dot = host_int8_dot_flags(cpuinfo)
    if dot is None:
        return "first_layer"  # not x86 Linux (no flags line): NNCF's own default, nothing known about u8 x s8 saturation
    return "first_layer" if dot else "enable"


def host_int8_scope(cpuinfo: str | None = None) -> str:
    """What int8 should quantize for this machine's CPU: "conv" without int8 dot products (VNNI / AMX), else "all".

    Measured: on an AVX2-only EPYC (benchmarks/results/int8_scope_avx2.json) quantizing every op made OpenVINO's
    int8 UNet slower than fp32 (its int8 matmuls run a slow GEMM there); convolutions only made it 1.07-1.14x faster.
    On an AVX-512 VNNI EPYC (int8_scope_vnni.json) every op is the better choice: 1.11-1.18x with warm weights,
    convolutions only 1.03-1.04x. Quality stayed within a point of fp32 either way.
    """
    dot = host_int8_dot_flags(cpuinfo)
    if dot is None:
        return "all"  # not x86 Linux: nothing known, keep NNCF's preset
    return "all" if dot else "conv"


def mem_available_bytes(meminfo: str | None = None) -> int | None:
    """The kernel's estimate of memory a new allocation can get without swapping (``MemAvailable``); None where
    ``/proc/meminfo`` is missing (not Linux)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


MiB = 1024**2


def process_memory() -> dict[str, float]:
    """This process's resident memory in MiB: ``rss_mib`` now (``/proc/self/statm``) and ``peak_rss_mib`` since it
    started (``getrusage`` ``ru_maxrss``: KiB on Linux, bytes on macOS); a key is left out where the host lacks it."""
    import os
    import resource
    import sys

    out: dict[str, float] = {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mib"] = round(peak / MiB if sys.platform == "darwin" else peak / 1024, 1)
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        out["rss_mib"] = round(resident_pages * os.sysconf("SC_PAGE_SIZE") / MiB, 1)
    except (OSError, IndexError, ValueError):
        pass
    return out
