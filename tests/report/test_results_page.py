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
