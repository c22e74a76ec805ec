"""What this machine's CPU offers, read from /proc/cpuinfo (Linux); torch-free, for the runtime, export and benchmarks."""

from __future__ import annotations

import os
import re
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


def cpu_model_name(cpuinfo: str | None = None) -> str | None:
    """The first processor's ``model name`` (x86 Linux), or None."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)


def cpu_vendor(cpuinfo: str | None = None) -> str | None:
    """"amd", "intel" or None, from ``vendor_id`` (AuthenticAMD / GenuineIntel), else from the model name."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("vendor_id")), "")
    name = (cpu_model_name(text) or "").lower()
    if vendor == "AuthenticAMD" or "amd" in name:
        return "amd"
    if vendor == "GenuineIntel" or "intel" in name:
        return "intel"
    return None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fp32_per_cycle(flags: frozenset[str], vendor: str | None) -> tuple[int, str]:
    """Dense fp32 FLOP per cycle per core from the SIMD flags (an FMA counts 2 FLOPs), and the assumption made."""
    if "avx512f" in flags and "fma" in flags:
        if vendor == "amd":
            if "avx512_vp2intersect" in flags:  # Zen 5 is the first AMD core with VP2INTERSECT
                return 64, "AMD Zen 5 (avx512_vp2intersect): 2 FMA pipes of full 512-bit width (server/desktop parts; mobile Zen 5 is 256-bit wide)"
            return 32, "AMD Zen 4 AVX-512: 512-bit ops run on two 256-bit FMA pipes (double-pumped)"
        return 64, "Intel AVX-512: assumes two 512-bit FMA units per core (Xeon Gold/Platinum; one-unit parts reach half)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: two 256-bit FMA units per core"
    if "avx" in flags:
        return 16, "AVX without FMA: one 256-bit add and one multiply per cycle"
    if "sse2" in flags or "sse" in flags:
        return 8, "SSE: one 128-bit add and one multiply per cycle"
    return 2, "no SIMD flags known: one scalar multiply-add per cycle"


def _per_cycle(precision: str, flags: frozenset[str], vendor: str | None) -> tuple[int, str] | None:
    fp32, basis = _fp32_per_cycle(flags, vendor)
    if precision == "fp32":
        return fp32, basis
    if precision == "bf16":
        if "amx_bf16" in flags:
            return 1024, "AMX-BF16 tiles: 1024 bf16 FLOP per cycle per core (Intel's figure)"
        if "avx512_bf16" in flags:
            return 2 * fp32, f"avx512_bf16 (VDPBF16PS, two bf16 products per fp32 lane) = 2x fp32; fp32 basis: {basis}"
        return None
    if precision == "int8":
        if "amx_int8" in flags:
            return 2048, "AMX-INT8 tiles: 2048 int8 ops per cycle per core (Intel's figure)"
        if "avx512_vnni" in flags or "avx_vnni" in flags:
            which = "avx512_vnni" if "avx512_vnni" in flags else "avx_vnni (256-bit)"
            width = fp32 if "avx512_vnni" in flags else min(fp32, 32)
            return 4 * width, f"{which} (VPDPBUSD, four u8 x s8 products per 32-bit lane) = 4x fp32 ops; fp32 basis: {basis}"
        return None
    if precision == "fp16":
        if "avx512_fp16" in flags:
            return 2 * fp32, f"avx512_fp16: twice the fp32 lanes; fp32 basis: {basis}"
        return None
    raise ValueError(f"unknown precision {precision!r}; choose fp32, fp16, bf16 or int8")


def cpu_peak_flops(precision: str = "fp32", cpuinfo: str | None = None, cores: int | None = None) -> dict | None:
    """The CPU's theoretical dense peak for ``precision``: flop/cycle/core (from the flags) x cores x clock (MHz).

    Returns {"flops_per_s", "flop_per_cycle_per_core", "cores", "mhz", "basis"} or None where the text has no flags
    or no clock (not x86 Linux), or the CPU has no instruction for ``precision`` (bf16, int8, fp16: the matching
    flags). ``cores`` defaults to this process's affinity count; ``cpuinfo`` to this machine's /proc/cpuinfo. The
    clock is what /proc/cpuinfo reports (base or current, not turbo), and the FMA-unit counts are assumptions named
    in ``basis``.
    """
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    flags, mhz = cpu_flags(text), cpu_mhz(text)
    if flags is None or not mhz:
        return None
    per = _per_cycle(precision, flags, cpu_vendor(text))
    if per is None:
        return None
    n = available_cores() if cores is None else cores
    if n < 1:
        raise ValueError(f"cores must be >= 1, got {n}")
    per_cycle, basis = per
    return {"flops_per_s": per_cycle * n * mhz * 1e6, "flop_per_cycle_per_core": per_cycle, "cores": n, "mhz": mhz,
            "basis": f"{cpu_model_name(text) or 'unknown CPU'}: {basis}; {n} core{'' if n == 1 else 's'} at {mhz:g} MHz (/proc/cpuinfo)"}


# Dense (no sparsity) peaks from NVIDIA's datasheets, FLOP/s: tensor-core fp16/bf16 and int8, and non-tensor fp32.
GPU_PEAKS = {
    "H200": {"fp32": 67e12, "fp16": 989e12, "bf16": 989e12, "int8": 1979e12, "source": "H200 SXM datasheet"},
    "H100 SXM": {"fp32": 67e12, "fp16": 989e12, "bf16": 989e12, "int8": 1979e12, "source": "H100 SXM datasheet"},
    "H100 PCIe": {"fp32": 51e12, "fp16": 756e12, "bf16": 756e12, "int8": 1513e12, "source": "H100 PCIe datasheet"},
    "A100": {"fp32": 19.5e12, "fp16": 312e12, "bf16": 312e12, "int8": 624e12, "source": "A100 datasheet"},
    "L4": {"fp32": 30.3e12, "fp16": 121e12, "bf16": 121e12, "int8": 242.5e12, "source": "L4 datasheet"},
    "RTX 4090": {"fp32": 82.6e12, "fp16": 165.2e12, "bf16": 165.2e12, "int8": 660.6e12, "source": "Ada (AD102) whitepaper, RTX 4090"},
}


def gpu_peak_flops(name: str, precision: str = "fp32") -> dict | None:
    """A GPU's dense peak for ``precision`` from its device name (e.g. "NVIDIA H100 80GB HBM3"), or None where the
    GPU is not in GPU_PEAKS. fp32 is the CUDA-core figure (TF32 tensor cores are not assumed)."""
    upper = name.upper()
    if "H200" in upper:
        key = "H200"
    elif "H100" in upper:
        key = "H100 PCIe" if "PCIE" in upper else "H100 SXM"
    else:  # whole words: an L40S is not an L4
        key = next((k for k in ("A100", "L4", "RTX 4090") if re.search(rf"\b{k}\b", upper)), None)
    if key is None or precision not in GPU_PEAKS[key]:
        return None
    return {"flops_per_s": GPU_PEAKS[key][precision], "basis": f"{name}: {GPU_PEAKS[key]['source']}, dense {precision}"}


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
