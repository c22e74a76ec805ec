"""benchmarks/bench_real_size.py: the whole CLI chain (teacher -> data -> distill -> prune -> export -> verify ->
generate) at the reduced ``tiny`` width by default, and (``slow``, about an hour) at ModelScope T2V's size."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_real_size.py"
_spec = importlib.util.spec_from_file_location("bench_real_size", SCRIPT)
brs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(brs)


def _run_chain(shape: str, tmp_path: Path, timeout: int) -> tuple[dict, Path]:
    out = tmp_path / "real_size.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shape", shape, "--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), tmp_path / "work" / shape


def _check_record(data: dict, work: Path) -> None:
    assert list(data["stages"]) == list(brs.STAGES)
    for name, row in data["stages"].items():
        assert row["returncode"] == 0, name
        assert row["wall_s"] > 0 and 0.01 < row["peak_rss_gib"] < 64, (name, row)  # a Python child's own peak, not this test's
        assert row["passed"] is (row["peak_rss_gib"] < brs.GOAL_PEAK_RSS_GIB)
        assert row["command"].startswith(("turbo-edge ", "python benchmarks/bench_real_size.py "))
    for name, path in brs.artifacts(work, work / "run").items():
        assert path.is_file() and path.stat().st_size > 0, (name, path)
    assert data["passed"] is all(r["passed"] for r in data["stages"].values())
    assert data["machine"]["cpu_model"] and data["goal_peak_rss_gib"] == 20.0


@pytest.mark.slow  # ~2 min on 2 cores: the benchmark's whole chain (run with -m slow)
def test_tiny_chain_runs_every_stage(tmp_path: Path) -> None:
    data, work = _run_chain("tiny", tmp_path, timeout=900)
    _check_record(data, work)
    assert data["int8_format"] == "qdq"  # auto: a few-MB UNet stays on Q/DQ ONNX
    manifest = json.loads((work / "run" / "bundle" / "manifest.json").read_text())
    assert manifest["components"]["unet"]["formats"]["int8"] == "onnx" and manifest["sampler"]["kind"] == "consistency"
    assert json.loads((work / "run" / "prune" / "pruned" / "pruning_plan.json").read_text())["removed"]  # VDMini removed blocks
    assert "--mixed-precision bf16 --gradient-checkpointing" in data["stages"]["distill"]["command"]
    assert "--backend openvino --precision int8" in data["stages"]["generate"]["command"]


@pytest.mark.slow
def test_modelscope_chain_under_the_memory_goal(tmp_path: Path) -> None:
    """About an hour on 2 cores; every stage's peak RSS is recorded and judged against 20 GiB, and the UNet's int8 is
    OpenVINO IR (its fp32 graph is over 2 GiB)."""
    data, work = _run_chain("modelscope", tmp_path, timeout=4 * 3600)
    _check_record(data, work)
    assert data["int8_format"] == "openvino"
