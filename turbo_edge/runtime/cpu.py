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
