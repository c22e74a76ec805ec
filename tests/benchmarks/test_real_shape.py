"""benchmarks/bench_real_shape.py: its ratio arithmetic and goal verdicts on hand-made medians, the results page's
section for its JSON, and (``slow``) the whole chain at the reduced ``tiny`` width."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_real_shape", ROOT / "benchmarks" / "bench_real_shape.py")
brs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(brs)

FLOPS = {"unpruned_b1": 600e9, "student_b1": 600.1e9, "teacher_cfg_b2": 1200e9, "vdmini_b1": 400e9, "vdmini_ch_b1": 200e9}
MEDIANS = {
    "pytorch": {"all": {"teacher_cfg_b2": 2000.0, "student_b1": 1010.0, "unpruned_b1": 1000.0, "vdmini_b1": 700.0, "vdmini_ch_b1": 400.0},
                "stages": {"text_b1": 50.0, "text_b2": 80.0, "decode": 1000.0}},
    "openvino": {"cfg": {"unpruned_b1": 500.0, "teacher_cfg_b2": 950.0}, "vdmini": {"unpruned_b1": 520.0, "vdmini_b1": 360.0},
                 "vdmini_ch": {"unpruned_b1": 510.0, "vdmini_ch_b1": 170.0}, "int8": {"unpruned_b1": 500.0, "int8_b1": 200.0},
                 "bf16": {"unpruned_b1": 500.0, "bf16_b1": 300.0}, "stages": {"text_b1": 20.0, "text_b2": 30.0, "decode": 400.0}},
}


def test_ratios_from_groups() -> None:
    r = brs.ratios(MEDIANS, FLOPS, {"threads": 2})
    # Loop: 50 teacher CFG calls over n student calls (PyTorch: the student's own call, w embedding included).
    assert r["loop"]["pytorch"]["4_step"] == pytest.approx(50 * 2000 / (4 * 1010), abs=0.01)
    assert r["loop"]["openvino"]["1_step"] == pytest.approx(50 * 950 / 500, abs=0.01)
    assert r["loop"]["pytorch"]["w_embedding_cost"] == pytest.approx(0.01)
    # Per video: text + steps x UNet + decode; the bound is teacher video / (text + decode).
    v = r["video"]["openvino"]
    teacher = 30 + 50 * 950 + 400
    assert v["teacher_ms"] == round(teacher)
    assert v["ratio_4_step"] == pytest.approx(teacher / (20 + 4 * 500 + 400), abs=0.01)
    assert v["bound_4_step"] == pytest.approx(teacher / 420, abs=0.1)
    assert v["student_4_step_share"]["decode"] == pytest.approx(400 / 2420, abs=1e-4)
    # Pruning: each group's own unpruned median, against the FLOP ratio (1.5x and 3x here).
    assert r["prune"]["openvino"]["vdmini"]["speedup"] == pytest.approx(520 / 360, abs=1e-3)
    assert r["prune"]["openvino"]["vdmini"]["of_flop_ratio"] == pytest.approx(520 / 360 / 1.5, abs=1e-3)
    assert r["prune"]["pytorch"]["vdmini_ch"]["speedup"] == pytest.approx(1010 / 400, abs=1e-3)  # like with like: both carry w
    assert r["precision"] == {"ov_int8_over_fp32": 2.5, "ov_bf16_over_fp32": pytest.approx(1.667, abs=1e-3)}
    assert r["backend"]["openvino_over_eager"] == 2.0
    g = r["goals"]
    assert g["ov_int8_over_fp32"] == {"value": 2.5, "goal": 2.0, "met": True}
    assert g["loop_4_step_pytorch"]["met"] is True and g["loop_1_step_pytorch"]["met"] is True  # 24.75 and 99.0
    assert g["prune_vdmini_pytorch"] == {"value": pytest.approx(0.962, abs=1e-3), "goal": 0.9, "met": True}  # 1.443x of 1.5x
    assert g["prune_vdmini_ch_pytorch"]["met"] is False  # 2.525x of 3x: 0.84


def test_peak_fraction_uses_the_fastest_fp32_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import turbo_edge.spec.host as host

    monkeypatch.setattr(host, "cpu_peak_flops", lambda precision="fp32", cpuinfo=None, cores=None: {"flops_per_s": 4e12, "basis": "test"})
    r = brs.ratios(MEDIANS, FLOPS, {"threads": 2})
    assert r["peak"]["backend"] == "openvino"
    assert r["peak"]["fraction"] == pytest.approx(600e9 / 0.5 / 4e12, abs=1e-3)
    assert r["goals"]["achieved_over_peak"]["met"] is False


def test_results_page_section(tmp_path: Path) -> None:
    from turbo_edge.report.results_page import write_results_page

    ratios = brs.ratios(MEDIANS, FLOPS, {"threads": 2})
    record = {"command": "python benchmarks/bench_real_shape.py", "machine": {"platform": "Linux", "cpus": 2, "threads": 2},
              "runs": 3, "warmup": 1, "threads": 2, "medians_ms": MEDIANS, "ratios": ratios, "flops": FLOPS,
              "shape": {"name": "modelscope", "frames": 8, "pixels": [128, 128], "latent": [16, 16], "text_len": 77,
                        "unet": brs.MODELSCOPE_UNET},
              "variants": {"unpruned": {"parameters": 1.41e9}}, "profiles": {"openvino_int8_b1": {"total_ms": 200.0, "ops": [{"op": "Convolution (jit_avx512_I8)", "ms": 120.0, "share": 0.6}]}}}
    results = tmp_path / "results"
    results.mkdir()
    (results / "real_shape_vnni.json").write_text(json.dumps(record))
    page = Path(write_results_page(results, tmp_path / "results.md")).read_text()
    assert "Speed at a real model's shape" in page and "### `real_shape_vnni.json`" in page
    assert "| UNet, VDMini block plan | 700.0 | 360.0 |" in page
    assert "| ov_int8_over_fp32 | 2.500 | 2.000 | yes |" in page and "| prune_vdmini_ch_pytorch | 0.842 | 0.900 | **no** |" in page
    assert "| openvino | 47930 | 2420 | 920 | 19.81 | 52.10 | 16.5 % | 114.10 |" in page
    assert "Shape `modelscope`: UNet3D (320, 640, 1280, 1280)" in page
    assert "Convolution (jit_avx512_I8) 60" in page
    # The page's evidence table names the real shape behind each speed figure.
    assert "| speed | 50-step CFG teacher ÷ 4-step student, denoising loop | 24.75x (pytorch) | ModelScope T2V shape: UNet3D (320, 640, 1280, 1280)" in page
    assert "| speed | OpenVINO int8 ÷ fp32, per UNet call | 2.50x (bf16 1.67x) |" in page


@pytest.mark.slow
def test_tiny_chain_end_to_end(tmp_path: Path) -> None:
    """The whole chain (save_pretrained -> turbo-edge export -> plans -> pruned exports -> int8 -> every backend) at
    the reduced width: a JSON with every ratio and goal."""
    out = tmp_path / "real_shape.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_real_shape.py"), "--shape", "tiny", "--runs", "1", "--warmup", "0",
                    "--work", str(tmp_path / "work"), "--out", str(out)], check=True, capture_output=True)
    data = json.loads(out.read_text())
    assert set(data["medians_ms"]) == {"pytorch", "ort", "openvino"}
    assert {"loop_4_step_ort", "prune_vdmini_openvino", "ov_int8_over_fp32", "ort_over_eager", "achieved_over_peak"} <= set(data["ratios"]["goals"])
    assert data["flops"]["onnx"]["unpruned_b1"] == pytest.approx(data["flops"]["unpruned_b1"], rel=0.02)
