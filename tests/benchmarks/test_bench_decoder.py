"""benchmarks/bench_decoder.py at the reduced ``tiny`` shape, on a model the decoder trainer made in one step."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_decoder", ROOT / "benchmarks" / "bench_decoder.py")
bd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bd)


def test_bench_decoder_writes_quality_and_latency(tiny_t2v_dir, tmp_path):
    from turbo_edge.decoder.train import train
    from turbo_edge.spec.configs import DecoderTrainConfig

    model = train(DecoderTrainConfig.make(model=str(tiny_t2v_dir), out=str(tmp_path / "run"), steps=1, batch=2, width=8,
                                          dataset_clips=8, val_clips=0, threads=1))
    out = tmp_path / "decoder.json"
    argv = ["--model", str(model), "--shape", "tiny", "--widths", "8", "--val-clips", "4", "--runs", "3", "--runs-large", "2",
            "--warmup", "1", "--work", str(tmp_path / "work"), "--out", str(out), "--eval-prompts", "2", "--openvino"]
    assert bd.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["command"].endswith(" ".join(argv)) and r["cpu"] and r["threads"] == 1
    q = r["quality"]["tiny"]["val_split_latents"]
    assert q["clips"] == 4 and q["frames"] == 16 and 0 < q["ssim"] <= 1 and q["psnr_db"] > 0
    assert "student_4_step_latents" not in r["quality"]["tiny"]  # a teacher: no 4-step sampler
    for where, names in (("model", ["tiny"]), ("tiny", ["tiny_w8", "pruned"])):
        row = r["latency"][where]
        for name in names:
            assert row["full"]["median_ms"] > 0 and row[name]["full_over_this"] == row["full"]["median_ms"] / row[name]["median_ms"]
            assert row["params"][name] < row["params"]["full"]
    shape = r["latency"]["tiny"]
    assert shape["tiny_channels"]["tiny_w8"] == [8, 8, 8, 8] and shape["frames_px"] == [4, 64, 64]
    assert shape["pruned_plan"]["removed"][:3] == ["mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"]
    ov = shape["openvino_fp32"]
    assert set(ov) == {"full", "tiny_w8", "pruned"} and ov["tiny_w8"]["full_over_this"] == ov["full"]["median_ms"] / ov["tiny_w8"]["median_ms"]
    assert all(row["parity_vs_torch"]["max_abs"] < 1e-3 for row in ov.values())  # the same graphs, fp32
    ev = r["evaluator"]
    assert ev["full"]["n_videos"] == ev["tiny"]["n_videos"] == 2 and "--decoder tiny" in ev["tiny"]["command"]
    assert ev["tiny"]["content_points_vs_full"] == 100 * (ev["tiny"]["content_acc"] - ev["full"]["content_acc"])


@pytest.mark.slow  # exports the Wan test configuration's causal decoder to ONNX (~30 s on 2 busy cores)
def test_bench_decoder_adds_the_wan_rows_to_an_existing_record(tmp_path, capsys):
    out = tmp_path / "decoder.json"
    out.write_text(json.dumps({"schema": 1, "latency": {"modelscope": {"kept": True}}}))
    argv = ["--wan", "--wan-shapes", "wan_test", "--widths", "8", "--threads", "1", "--runs-large", "2", "--warmup", "1",
            "--work", str(tmp_path / "work"), "--out", str(out), "--note", "a shared machine", "--openvino-int8", "--calibration", "2",
            "--calibration-hw", "2,2"]
    assert bd.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["latency"]["modelscope"] == {"kept": True}  # the rows that were there stay
    wan = r["latency"]["wan"]
    assert wan["command"].endswith(shlex.join(argv)) and wan["cpu"] and wan["threads"] == 1 and wan["note"] == "a shared machine"
    assert isinstance(wan["cpu_flags"], list) and len(wan["loadavg_at_start"]) == 3
    row = wan["wan_test"]
    assert row["latents"] == [1, 16, 3, 4, 4] and row["frames_px"] == [9, 32, 32] and row["tiny_channels"]["tiny_w8"] == [8, 8, 8, 8]
    ov = row["openvino_fp32"]
    assert set(ov) == {"full", "tiny_w8", "pruned"} and ov["tiny_w8"]["full_over_this"] == ov["full"]["median_ms"] / ov["tiny_w8"]["median_ms"]
    assert all(t["parity_vs_torch"]["max_abs"] < 1e-4 and t["gflop"] > 0 for t in ov.values())  # the graphs compute what PyTorch does
    # the causal decoder pruned by the ModelScope row's plan: the mid block and a resnet of each up block gone, fewer FLOPs
    assert row["pruned_plan"]["removed"][:3] == ["mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"]
    assert row["params"]["pruned"] < row["params"]["full"] and ov["pruned"]["gflop"] < ov["full"]["gflop"]
    q = row["openvino_int8"]  # fp32 and int8 side by side, each against the full decoder's fp32 call
    assert {"full", "full_int8", "tiny_w8_fp32", "tiny_w8_int8"} <= set(q) and q["tiny_w8_int8"]["full_over_this"] > 0
    assert q["full"]["error_vs_torch"]["max_abs"] < 1e-4 and q["tiny_w8_int8"]["error_vs_torch"]["mean_rel"] > 0  # int8 is not fp32
    # calibrated on 2x2 latents (the low-memory route: a dynamic-size graph), run at the row's 4x4. Measured: mean relative
    # error full 0.52 / tiny 0.007 / pruned 0.21, against 0.36 / 0.004 / 0.27 calibrated at 4x4 (random weights, base width 3)
    assert q["calibration_latent_hw"] == [2, 2] and {"pruned_fp32", "pruned_int8"} <= set(q)
    assert q["tiny_w8_int8"]["error_vs_torch"]["mean_rel"] < 0.05
    assert all(0 < q[k]["error_vs_torch"]["mean_rel"] < 1 for k in ("full_int8", "pruned_int8"))
    with pytest.raises(SystemExit):
        bd.main(["--wan", "--wan-shapes", "wan99", "--out", str(out)])
    assert "--wan-shapes: unknown ['wan99']" in capsys.readouterr().err
