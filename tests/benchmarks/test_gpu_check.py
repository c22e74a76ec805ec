"""benchmarks/gpu_check.py's CPU-side logic: path selection, skip records, budget, ratios, JSON shape, file naming;
and the script itself on this CPU machine, where every GPU path must be recorded as skipped with its reason."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)

ALL_THERE = {"cuda": True, "gpu_name": "NVIDIA H200", "diffusers": True, "cuda_python": True, "builtin_models": True,
             "ort_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"], "tensorrt_version": "10.8.0"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_path_runs_when_everything_imports():
    assert gc.select_paths(ALL_THERE) == {p: None for p in gc.PATHS}


def test_lent_h200_image_runs_only_the_pytorch_paths():
    # docs/decisions.md ("GPU check: what a lent machine has"): PyTorch CUDA and CPU onnxruntime, no TensorRT
    probe = {**ALL_THERE, "ort_providers": ["CPUExecutionProvider"], "tensorrt_version": None,
             "tensorrt_reason": "ModuleNotFoundError: No module named 'tensorrt'", "cuda_python": False}
    sel = gc.select_paths(probe)
    assert sel["pytorch-cuda-builtin"] is None and sel["pytorch-cuda-modelscope"] is None
    assert "no CUDAExecutionProvider" in sel["ort-cuda"] and "CPUExecutionProvider" in sel["ort-cuda"]
    assert sel["tensorrt"] == "tensorrt does not import (ModuleNotFoundError: No module named 'tensorrt')"


def test_no_cuda_skips_the_torch_and_tensorrt_paths_but_not_ort_cuda():
    probe = {**ALL_THERE, "cuda": False, "cuda_reason": "torch.cuda.is_available() is False"}
    sel = gc.select_paths(probe)
    for path in ("pytorch-cuda-builtin", "pytorch-cuda-modelscope", "tensorrt"):
        assert sel[path] == "no CUDA device for PyTorch: torch.cuda.is_available() is False"
    assert sel["ort-cuda"] is None  # ORT's CUDA EP does not need torch's CUDA


def test_missing_pieces_name_themselves():
    assert "cuda-python" in gc.select_paths({**ALL_THERE, "cuda_python": False})["tensorrt"]
    assert gc.select_paths({**ALL_THERE, "diffusers": False})["pytorch-cuda-modelscope"] == "diffusers does not import"
    no_builtin = gc.select_paths({**ALL_THERE, "builtin_models": False})
    assert all("not built" in no_builtin[p] for p in ("pytorch-cuda-builtin", "ort-cuda", "tensorrt"))
    assert no_builtin["pytorch-cuda-modelscope"] is None  # random weights: needs no checkout assets
    assert all(reason for reason in gc.select_paths({}).values())  # an empty probe skips everything


def test_budget_stops_new_cases_and_says_so():
    clock = FakeClock()
    budget = gc.Budget(420, clock=clock)
    clock.now += 400
    assert budget.allows() and budget.allows(20) and not budget.stopped
    assert not budget.allows(21) and budget.stopped
    clock.now += 30
    assert not budget.allows()
    assert budget.reason(5) == "time budget: 430 s of 420 s spent, this case needs ~5 s"


def test_latency_stats():
    stats = gc.latency_stats([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0, 11.0])
    assert stats == {"median_ms": 6.0, "p90_ms": 10.0, "min_ms": 1.0, "runs": 11}
    with pytest.raises(ValueError):
        gc.latency_stats([])


def _row(model, batch, precision, mode, ms):
    return {"model": model, "batch": batch, "precision": precision, "mode": mode, **({"median_ms": ms} if ms else {"error": "x"})}


def test_ratio_is_fifty_cfg_calls_over_four_student_calls():
    rows = [_row("builtin", 2, "fp16", "eager", 10.0), _row("builtin-student", 1, "fp16", "eager", 5.0),
            _row("builtin", 2, "fp16", "cuda_graph", 4.0), _row("builtin-student", 1, "fp16", "cuda_graph", 1.0),
            _row("builtin", 2, "bf16", "eager", 3.0), _row("builtin-student", 1, "bf16", "eager", None),  # failed case
            _row("builtin-student", 2, "fp32", "eager", 9.0)]  # student at batch 2: not the student's call
    ratios = gc.compose_ratios(rows, "builtin", "builtin-student")
    assert [(r["precision"], r["mode"]) for r in ratios] == [("fp16", "eager"), ("fp16", "cuda_graph")]
    eager = ratios[0]
    assert eager["teacher_unet_ms_per_video"] == 500.0 and eager["student_unet_ms_per_video"] == 20.0
    assert eager["teacher_over_student"] == 25.0
    assert ratios[1]["teacher_over_student"] == pytest.approx(50 * 4.0 / (4 * 1.0))


def test_ratio_of_one_architecture_compares_its_batch_2_and_batch_1_calls():
    rows = [_row("modelscope-shaped", 2, "bf16", "cuda_graph", 80.0), _row("modelscope-shaped", 1, "bf16", "cuda_graph", 50.0)]
    [r] = gc.compose_ratios(rows, "modelscope-shaped", "modelscope-shaped", teacher_steps=25, student_steps=2)
    assert r["teacher_over_student"] == pytest.approx(25 * 80 / (2 * 50))
    assert (r["teacher_calls"], r["teacher_batch"], r["student_calls"], r["student_batch"]) == (25, 2, 2, 1)


@pytest.mark.parametrize("name, slug", [("NVIDIA H200", "nvidia-h200"), ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
                                        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"), ("  Tesla T4 (MIG 1g.5gb) ", "tesla-t4-mig-1g-5gb"),
                                        (None, "no-gpu"), ("", "no-gpu")])
def test_gpu_slug(name, slug):
    assert gc.gpu_slug(name) == slug


def test_record_marks_skips_with_reasons_and_pending_paths():
    sel = {**{p: None for p in gc.PATHS}, "tensorrt": "tensorrt does not import (x)"}
    rec = gc.new_record("cmd", {"cpus": 2}, {"cuda": True}, sel, 420, dry_run=False)
    assert set(rec) >= {"kind", "schema_version", "command", "machine", "probe", "budget", "paths", "skipped", "rows", "ratios"}
    assert rec["paths"]["tensorrt"] == {"status": "skipped", "reason": "tensorrt does not import (x)", "seconds": 0.0}
    assert rec["paths"]["ort-cuda"]["status"] == "pending" and rec["paths"]["ort-cuda"]["reason"] is None
    assert rec["skipped"] == [{"path": "tensorrt", "case": None, "reason": "tensorrt does not import (x)"}]
    dry = gc.new_record("cmd", {}, {}, {p: None for p in gc.PATHS}, 420, dry_run=True)
    assert all(e["status"] == "skipped" and e["reason"] == "--dry-run: would run" for e in dry["paths"].values())


def test_run_paths_isolates_failures_and_stops_at_the_budget(tmp_path):
    clock = FakeClock()
    budget = gc.Budget(200, clock=clock)
    rec = gc.new_record("cmd", {}, {}, {p: None for p in gc.PATHS}, 200, dry_run=False)
    out = tmp_path / "gpu_x.json"
    seen = []

    def builtin(record, b, args):
        seen.append("builtin")
        record["rows"] += [{"path": "pytorch-cuda-builtin", "median_ms": 1.0}, {"path": "pytorch-cuda-builtin", "error": "capture"}]
        clock.now += 30

    def modelscope(record, b, args):
        seen.append("modelscope")
        assert json.loads(out.read_text())["paths"]["pytorch-cuda-builtin"]["status"]  # written after the previous path
        clock.now += 80
        raise RuntimeError("CUDA out of memory")

    def never(record, b, args):
        seen.append("never")

    runners = {"pytorch-cuda-builtin": builtin, "pytorch-cuda-modelscope": modelscope, "ort-cuda": never, "tensorrt": never}
    gc.run_paths(rec, budget, argparse.Namespace(), out, runners=runners)
    # 110 s spent: ort-cuda needs 60 s (fits under 200), tensorrt then needs 120 s more (does not)
    assert seen == ["builtin", "modelscope", "never"]
    paths = json.loads(out.read_text())["paths"]
    assert paths["pytorch-cuda-builtin"]["status"] == "ran, some cases failed"
    assert paths["pytorch-cuda-modelscope"]["status"] == "failed"
    assert paths["pytorch-cuda-modelscope"]["reason"] == "RuntimeError: CUDA out of memory"
    assert paths["ort-cuda"]["status"] == "ran"
    assert paths["tensorrt"]["status"] == "skipped" and paths["tensorrt"]["reason"].startswith("time budget: 110 s of 200 s")
    assert rec["budget"]["stopped_by_budget"] is True


def _check_all_skipped(out: Path) -> dict:
    rec = json.loads(out.read_text())
    assert rec["kind"] == "gpu_check" and rec["rows"] == [] and rec["ratios"] == []
    assert set(rec["paths"]) == set(gc.PATHS)
    for path, entry in rec["paths"].items():
        assert entry["status"] == "skipped" and entry["reason"], path
    assert {s["path"] for s in rec["skipped"]} == set(gc.PATHS)
    assert rec["machine"]["cpus"] == os.cpu_count()
    return rec


def test_dry_run_on_this_cpu_machine_writes_every_path_skipped(tmp_path):
    out = tmp_path / "gpu.json"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 60
    rec = _check_all_skipped(out)
    assert rec["dry_run"] is True and "--dry-run" in rec["command"]
    assert f"wrote {out}" in proc.stdout


def test_shell_entry_finds_the_checkout_and_runs_without_a_gpu(tmp_path):
    """gpu_check.sh with no PYTHONPATH, from another directory: the checkout's turbo_edge is used; on this CPU
    machine every path is skipped with its reason (CUDA missing, no CUDA EP, no tensorrt) and the run succeeds."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test checks the no-GPU record")
    out = tmp_path / "gpu.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    rec = _check_all_skipped(out)
    assert rec["dry_run"] is False and rec["command"].startswith("bash benchmarks/gpu_check.sh")
    assert rec["paths"]["pytorch-cuda-builtin"]["reason"].startswith("no CUDA device for PyTorch")
    assert "CUDAExecutionProvider" in rec["paths"]["ort-cuda"]["reason"]
    printed = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.split(": ", 1)[0] in gc.PATHS)
    assert printed == {p: e["reason"] for p, e in rec["paths"].items()}  # what it skipped and why, on stdout too
