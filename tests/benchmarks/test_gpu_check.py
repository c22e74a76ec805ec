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

ALL_THERE = {"cuda": True, "gpu_name": "NVIDIA H200", "diffusers": True, "cuda_python": True, "builtin_models": True, "onnxruntime": "1.20.0",
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
    assert sel["pytorch-cuda-wan"] is None and sel["pytorch-cuda-wan-vae"] is None
    assert "no CUDAExecutionProvider" in sel["ort-cuda"] and "CPUExecutionProvider" in sel["ort-cuda"]
    assert sel["tensorrt"] == sel["tensorrt-wan"] == "tensorrt does not import (ModuleNotFoundError: No module named 'tensorrt')"


def test_no_cuda_skips_the_torch_and_tensorrt_paths_but_not_ort_cuda():
    probe = {**ALL_THERE, "cuda": False, "cuda_reason": "torch.cuda.is_available() is False"}
    sel = gc.select_paths(probe)
    for path in ("pytorch-cuda-wan", "pytorch-cuda-modelscope", "pytorch-cuda-wan-vae", "tensorrt-wan", "pytorch-cuda-builtin", "tensorrt"):
        assert sel[path] == "no CUDA device for PyTorch: torch.cuda.is_available() is False"
    assert sel["ort-cuda"] is None  # ORT's CUDA EP does not need torch's CUDA


def test_missing_pieces_name_themselves():
    assert "cuda-python" in gc.select_paths({**ALL_THERE, "cuda_python": False})["tensorrt"]
    no_diffusers = gc.select_paths({**ALL_THERE, "diffusers": False})
    assert all(no_diffusers[p] == "diffusers does not import" for p in ("pytorch-cuda-modelscope", *gc.WAN_PATHS))
    assert "onnxruntime does not import" in gc.select_paths({**ALL_THERE, "onnxruntime": None})["tensorrt-wan"]
    no_builtin = gc.select_paths({**ALL_THERE, "builtin_models": False})
    assert all("not built" in no_builtin[p] for p in ("pytorch-cuda-builtin", "ort-cuda", "tensorrt"))
    # random weights, or a model directory the check writes itself: no checkout assets needed
    assert all(no_builtin[p] is None for p in ("pytorch-cuda-modelscope", *gc.WAN_PATHS))
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


def test_paths_run_most_valuable_first():
    assert gc.PATHS[:3] == ("pytorch-cuda-wan", "pytorch-cuda-modelscope", "pytorch-cuda-wan-vae")
    assert set(gc.PATHS) == set(gc.RUNNERS) == set(gc.MIN_SECONDS) and len(gc.PATHS) == 7
    assert gc.PATHS.index("tensorrt-wan") < gc.PATHS.index("tensorrt")


def test_run_paths_isolates_failures_and_stops_at_the_budget(tmp_path):
    clock = FakeClock()
    budget = gc.Budget(300, clock=clock)
    rec = gc.new_record("cmd", {}, {}, {p: None for p in gc.PATHS}, 300, dry_run=False)
    out = tmp_path / "gpu_x.json"
    seen = []

    def wan(record, b, args):
        seen.append("wan")
        gc.add_row(record, {"path": "pytorch-cuda-wan", "median_ms": 1.0}, out)
        assert json.loads(out.read_text())["rows"] == [{"path": "pytorch-cuda-wan", "median_ms": 1.0}]  # on disk before the path ends
        record["rows"].append({"path": "pytorch-cuda-wan", "error": "capture"})
        clock.now += 100

    def modelscope(record, b, args):
        seen.append("modelscope")
        assert json.loads(out.read_text())["paths"]["pytorch-cuda-wan"]["status"]  # written after the previous path
        clock.now += 50
        raise RuntimeError("CUDA out of memory")

    def runs(name, seconds):
        def runner(record, b, args):
            seen.append(name)
            clock.now += seconds
        return runner

    runners = {"pytorch-cuda-wan": wan, "pytorch-cuda-modelscope": modelscope, "pytorch-cuda-wan-vae": runs("vae", 0),
               "tensorrt-wan": runs("never", 0), "pytorch-cuda-builtin": runs("builtin", 30), "ort-cuda": runs("ort", 10),
               "tensorrt": runs("never", 0)}
    gc.run_paths(rec, budget, argparse.Namespace(), out, runners=runners)
    # 150 s spent: the decoder (45 s) runs; tensorrt-wan needs 240 s (not left); builtin 20 s and ort-cuda 60 s run
    # (to 190 s); tensorrt then needs 120 s more (310 > 300)
    assert seen == ["wan", "modelscope", "vae", "builtin", "ort"]
    paths = json.loads(out.read_text())["paths"]
    assert paths["pytorch-cuda-wan"]["status"] == "ran, some cases failed"
    assert paths["pytorch-cuda-modelscope"]["status"] == "failed"
    assert paths["pytorch-cuda-modelscope"]["reason"] == "RuntimeError: CUDA out of memory"
    assert paths["pytorch-cuda-wan-vae"]["status"] == paths["ort-cuda"]["status"] == "ran"
    assert paths["tensorrt-wan"]["status"] == "skipped" and paths["tensorrt-wan"]["reason"].startswith("time budget: 150 s of 300 s")
    assert paths["tensorrt"]["status"] == "skipped" and paths["tensorrt"]["reason"].startswith("time budget: 190 s of 300 s")
    assert rec["budget"]["stopped_by_budget"] is True


def test_tiny_runs_start_each_path_with_seconds_left(tmp_path):
    clock = FakeClock()
    budget = gc.Budget(30, clock=clock)
    rec = gc.new_record("cmd", {}, {}, {p: None for p in gc.PATHS}, 30, dry_run=False, device="cpu", tiny=True)
    seen = []
    runners = {p: (lambda record, b, args, p=p: seen.append(p)) for p in gc.PATHS}
    clock.now += 20  # 10 s left: more than TINY_MIN_SECONDS, less than any full-size path needs
    gc.run_paths(rec, budget, argparse.Namespace(tiny=True), tmp_path / "x.json", runners=runners)
    assert seen == list(gc.PATHS)


def test_cpu_device_runs_only_the_wan_paths():
    sel = gc.select_paths(ALL_THERE, device="cpu")
    assert [p for p, r in sel.items() if r is None] == list(gc.WAN_PATHS)
    assert sel["pytorch-cuda-builtin"] == "--device cpu runs the Wan paths' wiring only (--tiny)"
    assert gc.select_paths({"diffusers": True}, device="cpu")["tensorrt-wan"].startswith("onnxruntime does not import")
    assert gc.select_paths({**ALL_THERE, "cuda": False}, device="cpu")["pytorch-cuda-wan"] is None  # no GPU needed


def test_only_selects_paths_and_refuses_unknown_names():
    sel = {p: None for p in gc.PATHS} | {"tensorrt-wan": "tensorrt does not import (x)"}
    only = gc.apply_only(sel, "pytorch-cuda-wan, tensorrt-wan")
    assert only["pytorch-cuda-wan"] is None and only["tensorrt-wan"] == "tensorrt does not import (x)"  # its own reason wins
    assert all(only[p] == "not in --only" for p in gc.PATHS if p not in ("pytorch-cuda-wan", "tensorrt-wan"))
    assert gc.apply_only(sel, None) is sel
    with pytest.raises(ValueError, match="pytorch-cuda-wam"):
        gc.apply_only(sel, "pytorch-cuda-wam")


def test_results_file_names_a_gpu_run_and_keeps_tiny_runs_out_of_results():
    assert gc.default_out(None, "res", "work", "NVIDIA H100 80GB HBM3", "cuda", False) == Path("res/gpu_nvidia-h100-80gb-hbm3.json")
    assert gc.default_out(None, "res", "work", "NVIDIA H100 80GB HBM3", "cuda", True) == Path("work/gpu_nvidia-h100-80gb-hbm3_tiny.json")
    assert gc.default_out(None, "res", "work", None, "cpu", True) == Path("work/gpu_cpu_tiny.json")
    assert gc.default_out("x.json", "res", "work", None, "cpu", True) == Path("x.json")
    # an --only run keeps the full run's file: its paths name it, in the order they run
    assert gc.default_out(None, "res", "work", "NVIDIA H200", "cuda", False, "tensorrt-wan,pytorch-cuda-wan") == Path(
        "res/gpu_nvidia-h200_pytorch-cuda-wan+tensorrt-wan.json")


def test_record_names_the_gpu_and_whether_its_figures_are_gpu_results():
    sel = {p: None for p in gc.PATHS}
    real = gc.new_record("cmd", {"gpu_name": "NVIDIA H100 80GB HBM3"}, {}, sel, 420, dry_run=False)
    assert real["device"] == {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "gpu_results": True} and real["schema_version"] == 2
    assert gc.new_record("cmd", {"gpu_name": "NVIDIA H100"}, {}, sel, 420, dry_run=False, tiny=True)["device"]["gpu_results"] is False
    assert gc.new_record("cmd", {"gpu_name": None}, {}, sel, 420, dry_run=False)["device"] == {"kind": "cuda", "name": None, "gpu_results": False}
    cpu = gc.new_record("cmd", {"gpu_name": "NVIDIA H100"}, {}, sel, 420, dry_run=False, device="cpu", tiny=True)
    assert cpu["device"] == {"kind": "cpu", "name": "cpu", "gpu_results": False} and cpu["tiny"] is True


def test_cpu_device_without_tiny_is_refused():
    with pytest.raises(SystemExit) as info:
        gc.main(["--device", "cpu", "--dry-run"])
    assert info.value.code == 2


def test_runs_for_fits_calls_in_the_seconds_given():
    from _gpu import runs_for  # beside gpu_check.py, on the path once it is loaded

    assert runs_for(1100.0, 6.0, 3, 30) == 5  # a Wan CFG call at 480p: a handful
    assert runs_for(5.0, 6.0, 3, 30) == 30  # a small UNet: the full count
    assert runs_for(9000.0, 6.0, 3, 30) == 3  # slower than the slice: the minimum
    assert runs_for(0.0, 6.0, 3, 30) == 30
    with pytest.raises(ValueError):
        runs_for(1.0, 1.0, 0, 3)


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
