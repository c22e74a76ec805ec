"""The benchmarks' shared timing loop (benchmarks/_timing.py; standalone scripts, loaded here by path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_timing", Path(__file__).parents[2] / "benchmarks" / "_timing.py")
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)


def _recorder(log: list[str], name: str):
    return lambda: log.append(name)


def test_strict_turns_alternate_every_call():
    log: list[str] = []
    times = timing.time_interleaved({"a": _recorder(log, "a"), "b": _recorder(log, "b")}, warmup=1, runs=3)
    assert log == ["a", "b"] * 4 and {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_block_mode_repeats_each_call_and_times_only_the_repeats():
    log: list[str] = []
    times = timing.time_interleaved({"a": _recorder(log, "a"), "b": _recorder(log, "b")}, warmup=0, runs=5, block=4)
    # two turns: each runs a 4 times then b 4 times, 3 timed repeats per block, trimmed to 5 samples
    assert log == ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5}
    with pytest.raises(ValueError, match="block must be >= 1"):
        timing.time_interleaved({"a": _recorder(log, "a")}, warmup=0, runs=1, block=0)
