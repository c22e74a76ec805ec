"""``turbo-edge demo`` end to end at smoke size on the builtin teacher: every stage runs, the table prints, and an
interrupted demo re-run reuses what finished."""

from __future__ import annotations

import dataclasses
import json

import pytest

from turbo_edge import demo
from turbo_edge.cli import main

SMOKE = ["--num-prompts", "2", "--distill-steps", "2", "--prune-steps", "2", "--teacher-steps", "2", "--threads", "2"]


def _config(out):
    return demo.DemoConfig(out=str(out), num_prompts=2, distill_steps=2, prune_steps=2, teacher_steps=2, student_steps=(1, 4),
                           backends=("openvino",), precisions=("fp32",), threads=2)


def test_interrupted_demo_resumes_and_prints_the_table(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    cfg = _config(out)
    real_measure = demo.measure_row
    calls = []

    def interrupted(spec, *a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated Ctrl-C during the third row")
        calls.append(spec.row)
        return real_measure(spec, *a, **kw)

    monkeypatch.setattr(demo, "measure_row", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(cfg)
    assert not (out / "demo.json").exists()
    capsys.readouterr()

    monkeypatch.setattr(demo, "measure_row", real_measure)
    result = demo.run_demo(cfg)
    printed = capsys.readouterr().out
    # the stages and the two measured rows were reused, not redone
    assert "distill: reusing" in printed and "prune: reusing" in printed
    assert printed.count(": reusing") >= 4 and "generating" in printed
    rows = result["rows"]
    # teacher, student 1- and 4-step in PyTorch, student OpenVINO fp32 (full, then tiny decoder: the shipped students
    # carry one, so their bundles have it), pruned PyTorch, pruned OpenVINO fp32 (full, tiny)
    assert [(r["stage"], r["backend"], r["steps"], r["decoder"]) for r in rows] == [
        ("teacher", "pytorch", 2, "full"), ("student", "pytorch", 1, "full"), ("student", "pytorch", 4, "full"),
        ("student", "openvino", 4, "full"), ("student", "openvino", 4, "tiny"),
        ("pruned", "pytorch", 4, "full"), ("pruned", "openvino", 4, "full"), ("pruned", "openvino", 4, "tiny"),
    ]
    for full, tiny in ((rows[3], rows[4]), (rows[6], rows[7])):  # the tiny decoder's call: ~4x faster at this size (bench)
        assert tiny["row"] == full["row"] + " tiny dec" and tiny["stage_latency_ms"]["vae_decoder"] < full["stage_latency_ms"]["vae_decoder"]
    for r in rows:
        assert r["latency_ms"] > 0 and 0.0 <= r["content_acc"] <= 1.0 and 0.0 <= r["motion_acc"] <= 1.0 and r["n_videos"] == 2
        assert r["speedup"] == pytest.approx(rows[0]["latency_ms"] / r["latency_ms"])
        assert r["unet_gflops_per_step"] > 0 and 0 < r["fraction_of_peak"] < 1
    # the teacher's UNet runs the CFG pair (batch 2), the student one row: twice the FLOPs per step
    assert rows[0]["unet_gflops_per_step"] == pytest.approx(2 * rows[1]["unet_gflops_per_step"], rel=0.05)
    assert rows[5]["unet_gflops_per_step"] < rows[1]["unet_gflops_per_step"]  # pruning removed work
    assert "ms/video" in printed and "openvino" in printed
    saved = json.loads((out / "demo.json").read_text())
    assert len(saved["rows"]) == 8 and saved["stage_latency"]
    # wall time per stage of the resumed run: every stage is named, and they account for the run's time
    wall = saved["stage_seconds"]
    assert set(wall) == {"distill", "prune", "export", "rows_teacher", "rows_student", "rows_pruned"}
    assert 0 < sum(wall.values()) <= saved["seconds"] and "seconds per stage" in printed
    index = json.loads((out / "index.json").read_text())
    for row_clips in index["rows"].values():
        assert all((out / p).is_file() for p in row_clips.values())


def test_demo_dry_run_and_bad_preset(capsys):
    assert main(["demo", "--dry-run", *SMOKE]) == 0
    assert json.loads(capsys.readouterr().out)["num_prompts"] == 2
    with pytest.raises(ValueError, match="unknown preset"):
        demo.DemoConfig(preset="huge")


def test_demo_family_names_its_builtin_chain_and_explicit_models_win(capsys):
    assert main(["demo", "--dry-run", "--family", "dit"]) == 0
    cfg = demo.DemoConfig.from_dict(json.loads(capsys.readouterr().out))
    assert [cfg.model(r) for r in ("teacher", "student", "pruned")] == ["builtin-dit", "builtin-dit-student", "builtin-dit-pruned"]
    assert demo.DemoConfig(family="dit", student="runs/s").model("student") == "runs/s"
    assert demo.DemoConfig().model("teacher") == "builtin"
    with pytest.raises(ValueError, match="unknown family 'vit'"):
        demo.DemoConfig(family="vit")


def test_gpu_rows_are_planned_and_refused_without_a_gpu(tmp_path):
    from pathlib import Path

    cfg = demo.DemoConfig(backends=("openvino", "tensorrt"), precisions=("fp32", "fp16", "int8"), student_steps=(4,))
    labels = {"student": "student", "pruned": "pruned"}
    rows = demo.plan_rows(cfg, Path("t"), Path("s"), Path("p"), {"student": Path("bs"), "pruned": Path("bp")}, labels)
    combos = {(r.stage, r.backend, r.precision) for r in rows}
    assert ("student", "tensorrt", "fp16") in combos and ("pruned", "tensorrt", "int8") in combos
    assert ("student", "openvino", "fp16") not in combos  # fp16 is a GPU precision
    assert ("student", "openvino", "int8") in combos
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    with pytest.raises(ValueError, match="tensorrt"):  # this machine has no GPU / TensorRT: refused before any stage
        demo.run_demo(dataclasses.replace(cfg, out=str(tmp_path / "gpu")))
    assert not (tmp_path / "gpu").exists()
