"""docs/results.md is rendered from benchmarks/results/*.json and must not drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from turbo_edge.report.results_page import HEADER, main, render_results_page, write_results_page

REPO = Path(__file__).resolve().parents[2]


def test_docs_results_page_matches_the_results_files(tmp_path: Path) -> None:
    page = REPO / "docs" / "results.md"
    assert page.is_file(), "docs/results.md is missing: run `python -m turbo_edge.report.results_page`"
    rendered = write_results_page(REPO / "benchmarks" / "results", tmp_path / "results.md").read_text(encoding="utf-8")
    assert page.read_text(encoding="utf-8") == rendered, (
        "docs/results.md differs from what benchmarks/results/ renders to now; regenerate it with "
        "`turbo-edge report --page docs/results.md` (or `python -m turbo_edge.report.results_page`)")
    assert HEADER in rendered


def test_synthetic_files_render_their_numbers_and_unknown_files_are_skipped(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "prune_test.json").write_text(json.dumps({
        "command": "python benchmarks/bench_prune.py --runs 3",
        "cpu": "x86_64", "cores": 4, "torch": "2.13.0+cpu", "threads": 2, "runs": 3, "block": 4,
        "models": "a vs b", "params_ratio": 0.5, "flops_ratio": 0.6, "latency_speedup": 1.875,
        "student": {"median_ms": 30.0}, "pruned": {"median_ms": 16.0},
        "fp32_onnx_same_inputs": {"openvino": {"student_median_ms": 12.5, "pruned_median_ms": 10.0, "latency_speedup": 1.25}},
    }))
    (results / "distill_quality.json").write_text(json.dumps({
        "teacher_val": {"content_acc": 0.9876, "motion_acc": 0.5, "fd": 123.4, "n_videos": 7},
    }))
    (results / "mystery.json").write_text(json.dumps({"command": "something else", "value": 98765.4321}))
    (results / "export_broken.json").write_text(json.dumps({"command": "x", "unet_latency": 3}))  # known family, wrong shape
    (results / "runtime_bad.json").write_text("{not json")

    text = write_results_page(results, tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert text == render_results_page(results)  # deterministic
    lines = text.splitlines()
    assert HEADER in lines
    assert "| PyTorch eager | 30.0 | 16.0 | 1.88 |" in lines
    assert "| OpenVINO fp32 | 12.5 | 10.0 | 1.25 |" in lines
    assert "| teacher_val | 0.988 | 0.500 | 123 | — | 7 |" in lines
    assert "Machine: CPU x86_64, 4 cores, torch 2.13.0+cpu." in lines
    assert "Reproduce: `python benchmarks/bench_prune.py --runs 3`" in lines
    assert "Reproduce: see benchmarks/README.md." in lines  # distill_quality.json records no command
    assert "Machine: not recorded in the file." in lines
    # The unknown, malformed and unreadable files get no section and none of their figures; they are only listed.
    assert "### `mystery.json`" not in text and "98765" not in text and "something else" not in text
    assert "### `export_broken.json`" not in text and "### `runtime_bad.json`" not in text
    assert "## Export" not in text and "## Runtime" not in text
    assert "`mystery.json` (no section for it)" in text
    assert "`export_broken.json` (not the structure its section expects)" in text
    assert "`runtime_bad.json` (not a JSON object)" in text


def test_empty_results_directory_renders_a_header_only_page(tmp_path: Path) -> None:
    text = render_results_page(tmp_path)
    assert HEADER in text and "## " not in text


def test_missing_results_directory_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_results"
    with pytest.raises(FileNotFoundError) as info:
        write_results_page(missing, tmp_path / "results.md")
    message = str(info.value)
    assert str(missing) in message and "\n" not in message
    assert not (tmp_path / "results.md").exists()


def test_module_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "teacher.json").write_text(json.dumps({"command": "c", "rows": [{"model": "m", "prompts": "val", "content_acc": 0.25}]}))
    out = tmp_path / "docs" / "results.md"
    assert main([str(tmp_path), str(out)]) == 0
    assert "| m | val | — | 0.250 |" in out.read_text(encoding="utf-8")
    assert main([str(tmp_path / "missing"), str(out)]) == 2
    assert "results directory not found" in capsys.readouterr().err


def _gpu_record(**over) -> dict:
    record = {
        "kind": "gpu_check", "schema_version": 2, "command": "bash benchmarks/gpu_check.sh (runs: python benchmarks/gpu_check.py)", "dry_run": False,
        "device": {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "gpu_results": True}, "tiny": False,
        "machine": {"platform": "Linux", "cpus": 16, "gpu_name": "NVIDIA H100 80GB HBM3", "nvidia_smi": "NVIDIA H100 80GB HBM3, 550.54, 1980 MHz, 700 W"},
        "budget": {"seconds": 420.0, "spent_s": 390.4, "stopped_by_budget": True},
        "paths": {"pytorch-cuda-wan": {"status": "ran", "reason": None, "seconds": 101.2},
                  "tensorrt-wan": {"status": "skipped", "reason": "tensorrt does not import (x)", "seconds": 0.0}},
        "rows": [{"path": "pytorch-cuda-wan", "model": "wan2.1-t2v-1.3b-shaped", "batch": 2, "precision": "bf16", "mode": "cuda_graph",
                  "input_shape": [2, 16, 21, 60, 104], "median_ms": 1234.56, "p90_ms": 1240.0, "runs": 5, "max_abs_diff_vs_fp32": 0.0123,
                  "peak_memory_bytes": 9 * 2**30},
                 {"path": "pytorch-cuda-wan", "model": "wan2.1-t2v-1.3b-shaped", "batch": 1, "precision": "fp16", "mode": "cuda_graph",
                  "input_shape": [1, 16, 21, 60, 104], "error": "RuntimeError: CUDA out of memory"},
                 {"path": "tensorrt-wan", "model": "wan-trt-2-block", "component": "vae_decoder", "backend": "tensorrt fp32 eager",
                  "median_ms": 55.5, "max_abs_diff_vs_ort_cpu_fp32": 0.00042}],
        "ratios": [{"teacher": "wan2.1-t2v-1.3b-shaped", "precision": "bf16", "mode": "eager", "teacher_calls": 50, "teacher_batch": 2,
                    "student_calls": 4, "student_batch": 1, "teacher_unet_ms_per_video": 61728.0, "student_unet_ms_per_video": 2500.0,
                    "teacher_over_student": 24.69}],
        "wan_transformer": {"parameters": 1418996800, "geometry": {"frames": 81, "pixels": [480, 832], "latent": [16, 21, 60, 104], "tokens": 32760,
                                                                    "text": [512, 4096]}},
        "wan_tensorrt": {"engines": [{"component": "unet", "engine": "unet.fp16.trt10.8.plan", "build_s": 88.25}]},
        "skipped": [{"path": "pytorch-cuda-wan", "case": "wan2.1-t2v-1.3b-shaped b1 fp16 eager", "reason": "time budget: 400 s of 420 s spent"}],
    }
    return {**record, **over}


def test_gpu_check_files_render_under_their_gpus_name(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "gpu_nvidia-h100-80gb-hbm3.json").write_text(json.dumps(_gpu_record()))
    text = render_results_page(results)
    lines = text.splitlines()
    assert "## GPU check: PyTorch CUDA, ONNX Runtime CUDA and TensorRT" in lines and "### `gpu_nvidia-h100-80gb-hbm3.json`" in lines
    assert any(line.startswith("Device: **NVIDIA H100 80GB HBM3** (NVIDIA H100 80GB HBM3, 550.54") and "390 s of 420 s, stopped by it." in line
               for line in lines)
    assert "| pytorch-cuda-wan | wan2.1-t2v-1.3b-shaped | 2 | bf16 | cuda_graph | 2x16x21x60x104 | 1235 | 1240 | 5 | 0.0123 | 9.00 |" in lines
    assert any("| 1 | fp16 | cuda_graph |" in line and "error: RuntimeError: CUDA out of memory" in line for line in lines)
    assert "| tensorrt-wan | wan-trt-2-block | vae_decoder | tensorrt fp32 eager | 55.5 | 0.00042 |" in lines
    assert "| wan2.1-t2v-1.3b-shaped (50 calls at batch 2 ÷ 4 at batch 1) | bf16 | eager | 61728 | 2500 | 24.69 |" in lines
    assert "| unet | unet.fp16.trt10.8.plan | 88.2 |" in lines
    assert "| tensorrt-wan | skipped | tensorrt does not import (x) | 0 |" in lines
    assert any("32760 tokens" in line and "1.419 B parameters" in line for line in lines)
    assert "Not GPU results" not in text and "(no section for it)" not in text


@pytest.mark.parametrize("over, why", [({"dry_run": True, "device": {"kind": "cuda", "name": "NVIDIA H200", "gpu_results": False}}, "a dry run"),
                                       ({"tiny": True, "device": {"kind": "cpu", "name": "cpu", "gpu_results": False}}, "a `--tiny` wiring check")])
def test_a_dry_run_or_a_tiny_check_is_not_shown_as_gpu_results(tmp_path: Path, over: dict, why: str) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "gpu_x.json").write_text(json.dumps(_gpu_record(**over)))
    text = render_results_page(results)
    assert f"**Not GPU results**: {why}" in text


def test_a_partial_dit_quality_file_renders_its_teacher_row_and_only_the_measured_gate(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    teacher = {"content": 0.9375, "motion": 1.0, "fd": 332.0, "n_videos": 192, "steps": 50, "seconds_per_video": 3.68,
               "sampler": "50-step flow Euler + CFG"}
    (results / "dit_quality.json").write_text(json.dumps({
        "kind": "dit_quality", "teacher": "builtin-dit", "teacher_lineage": {"stage": "teacher_train", "step": 20000},
        "rows": {"teacher": teacher}, "gates": {"teacher_content_motion_ge_0.9": True}, "complete": False,
        "command": "python benchmarks/bench_dit.py --teacher-only", "machine": {"cpu": "x86_64"}}))
    lines = render_results_page(results).splitlines()
    assert "## The DiT family: Wan-architecture teacher, student and pruned student" in lines
    assert "| teacher | 50-step flow Euler + CFG | 50 | 0.938 | 1.000 | 332 | — | 192 | 3.68 |" in lines
    assert "Gates: teacher_content_motion_ge_0.9 yes." in lines
    assert "Teacher `builtin-dit`: teacher_train, step 20000." in lines
    assert any(line.startswith("Partial: the rows after the teacher's") for line in lines)


def test_the_dit_int8_file_renders_its_rows_gate_and_scope_table(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    row = {"content": 0.99, "motion": 1.0, "fd": 90.0, "n_videos": 192, "steps": 4, "seconds_per_video": 0.05}
    scope = {"ignored_patterns": [".*attn2.*"], "quantize_linear": 40, "matmul_gemm": 60, "matmul_gemm_fp32": 12,
             "parity_int8": {"mean_rel": 0.0123}, "transformer_call": {"fp32": {"median_ms": 8.0}, "int8": {"median_ms": 5.0}, "fp32_over_int8": 1.6}}
    (results / "dit_int8.json").write_text(json.dumps({
        "kind": "dit_int8", "rows": {"openvino_fp32": {**row, "sampler": "bundle fp32, OpenVINO CPU"},
                                     "openvino_int8_keep_cross": {**row, "content": 0.984, "sampler": "bundle int8 (scope keep_cross), OpenVINO CPU"}},
        "gates": {"int8_keep_cross_within_0.5_point_of_fp32": False}, "scopes": {"keep_cross": scope},
        "command": "python benchmarks/bench_dit_int8.py", "machine": {"cpu": "x86_64"}}))
    lines = render_results_page(results).splitlines()
    assert "| openvino_int8_keep_cross | bundle int8 (scope keep_cross), OpenVINO CPU | 4 | 0.984 | 1.000 | 90 | — | 192 | 0.05 |" in lines
    assert "Gates: int8_keep_cross_within_0.5_point_of_fp32 no." in lines
    assert any(line.startswith("| keep_cross | `.*attn2.*` | 40 | 12 of 60 | 0.0123 | 8.0 | 5.0 | 1.60 |") for line in lines), \
        [line for line in lines if "keep_cross |" in line]
