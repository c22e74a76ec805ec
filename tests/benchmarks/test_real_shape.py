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


def test_unet_per_video_with_the_tiny_decoder_and_the_int8_unet() -> None:
    """The decoder issue's figures at the ModelScope shape: a tiny decoder timed in the stages group gives the student's
    videos with it (the teacher keeps the full decoder), and OpenVINO's int8 group gives the deployed student."""
    import copy

    medians = copy.deepcopy(MEDIANS)
    assert not any(k.startswith(("video_", "decoder_")) for k in brs.ratios(medians, FLOPS, {"threads": 2})["goals"])
    medians["openvino"]["stages"]["decode_tiny"] = 20.0
    r = brs.ratios(medians, FLOPS, {"threads": 2})
    v, teacher = r["video"]["openvino"], 30 + 50 * 950 + 400
    assert v["decoder_full_over_tiny"] == 20.0 and v["student_4_step_tiny_ms"] == 20 + 4 * 500 + 20
    assert v["ratio_1_step_tiny"] == pytest.approx(teacher / (20 + 500 + 20), abs=0.01)
    # int8: the cfg group's fp32 call times the int8 group's own int8 / fp32 ratio (200 / 500).
    assert v["student_4_step_int8_tiny_ms"] == round(20 + 4 * 200 + 20) and "student_4_step_int8_tiny_share" not in v
    g = r["goals"]
    assert g["decoder_full_over_tiny_openvino"] == {"value": 20.0, "goal": 5.0, "met": True}
    assert g["video_4_step_tiny_openvino"] == {"value": pytest.approx(teacher / 2040, abs=0.01), "goal": 22.0, "met": True}
    assert g["video_1_step_int8_tiny_openvino"] == {"value": pytest.approx(teacher / 240, abs=0.01), "goal": 60.0, "met": True}
    assert "video_4_step_int8_tiny_pytorch" not in g  # int8 is OpenVINO's


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
    for kind in ("ort", "openvino"):  # the tiny decoder, timed beside the full one on the bundle decoder's latents
        assert data["medians_ms"][kind]["stages"]["decode_tiny"] > 0 and "ratio_4_step_tiny" in data["ratios"]["video"][kind]
    assert "video_1_step_int8_tiny_openvino" in data["ratios"]["goals"] and data["decoders"]["tiny"]["width"] == 64


# ------------------------------------------------------------------ --family wan (benchmarks/_real_shape_wan.py)

sys.path.insert(0, str(ROOT / "benchmarks"))
import _real_shape_wan as wan  # noqa: E402

WAN_FLOPS = {"unpruned_b1": 3.8e12, "student_b1": 3.8e12, "teacher_cfg_b2": 7.6e12, "vdmini_b1": 2.55e12, "vdmini_ch_b1": 1.95e12}
WAN_MEDIANS = {
    "openvino": {"cfg": {"unpruned_b1": 15000.0, "teacher_cfg_b2": 29000.0}, "vdmini": {"unpruned_b1": 15200.0, "vdmini_b1": 10400.0},
                 "vdmini_ch": {"unpruned_b1": 15100.0, "vdmini_ch_b1": 8000.0}, "int8": {"unpruned_b1": 15000.0, "int8_b1": 6000.0},
                 "stages": {"text_b1": 2000.0, "text_b2": 3600.0, "decode": 40000.0}},
}


def test_wan_goals_follow_the_cpu_and_text_times_scale_to_24_layers() -> None:
    assert wan.goals({"int8_dot_product": ["avx512_vnni"]})["ov_int8_vs_fp32"] == 2.0
    assert wan.goals({"int8_dot_product": []}) == {"loop_4_step": 22.0, "prune_vs_flops": 0.9, "ov_int8_vs_fp32": 1.5, "achieved_vs_peak": 0.5,
                                                   "decoder_full_over_tiny": 5.0, "video_4_step_tiny": 22.0, "video_1_step_tiny": 60.0}
    medians = json.loads(json.dumps(WAN_MEDIANS))
    wan.scale_text(medians, 12.0)
    st = medians["openvino"]["stages"]
    assert (st["text_b1"], st["text_b1_measured"], st["text_b2"], st["decode"]) == (24000.0, 2000.0, 43200.0, 40000.0)
    r = brs.ratios(medians, WAN_FLOPS, {"threads": 2}, goals=wan.goals({"int8_dot_product": []}))
    teacher = 43200 + 50 * 29000 + 40000
    assert r["video"]["openvino"]["teacher_ms"] == teacher
    assert r["video"]["openvino"]["ratio_4_step"] == pytest.approx(teacher / (24000 + 4 * 15000 + 40000), abs=0.01)
    assert r["video"]["openvino"]["student_4_step_share"]["decode"] == pytest.approx(40000 / 124000, abs=1e-4)
    g = r["goals"]  # only the DiT's goals are judged: no 1-step or ORT-over-eager verdicts
    assert g["loop_4_step_openvino"] == {"value": pytest.approx(50 * 29000 / 60000, abs=0.01), "goal": 22.0, "met": True}
    assert g["ov_int8_over_fp32"] == {"value": 2.5, "goal": 1.5, "met": True}
    assert g["prune_vdmini_ch_openvino"]["value"] == pytest.approx(15100 / 8000 / (3.8 / 1.95), abs=1e-3)
    assert not any(k.startswith("loop_1_step") for k in g) and "ort_over_eager" not in g
    assert not any(k.startswith(("video_", "decoder_")) for k in g)  # no tiny decoder timed: nothing judged on one
    # A tiny decoder timed in the stages group: the student's videos with it, the teacher's with the full one.
    medians["openvino"]["stages"]["decode_tiny"] = 500.0
    r = brs.ratios(medians, WAN_FLOPS, {"threads": 2}, goals=wan.goals({"int8_dot_product": []}))
    v = r["video"]["openvino"]
    assert v["decoder_full_over_tiny"] == 80.0 and v["student_4_step_tiny_ms"] == 24000 + 4 * 15000 + 500
    assert v["ratio_1_step_tiny"] == pytest.approx(teacher / (24000 + 15000 + 500), abs=0.01)
    assert v["student_4_step_tiny_share"]["decode"] == pytest.approx(500 / 84500, abs=1e-4)
    g = r["goals"]
    assert g["video_4_step_tiny_openvino"] == {"value": pytest.approx(teacher / 84500, abs=0.01), "goal": 22.0, "met": False}  # 18.1x
    assert g["video_1_step_tiny_openvino"] == {"value": pytest.approx(teacher / 39500, abs=0.01), "goal": 60.0, "met": False}  # 38.8x
    assert g["decoder_full_over_tiny_openvino"] == {"value": 80.0, "goal": 5.0, "met": True}
    # int8 measured on the first blocks: the deployed student (int8 transformer, tiny decoder) composed from its estimate.
    medians["openvino"]["int8"] = {"depth_b1": 6000.0, "int8_depth_b1": 2500.0}
    record = {"medians_ms": medians, "flops": WAN_FLOPS, "threads": 2, "int8": {"blocks": 12}}
    r = wan.compose(record, wan.goals({"int8_dot_product": ["avx512_vnni"]}))
    whole = medians["openvino"]["cfg"]["unpruned_b1"] / 2.4
    assert r["precision"]["ov_int8_over_fp32"] == 2.4 and r["precision"]["ov_int8_whole_call_ms_estimate"] == pytest.approx(whole, abs=0.1)
    v = r["video"]["openvino"]
    assert v["student_1_step_int8_tiny_ms"] == round(24000 + whole + 500)
    assert v["ratio_4_step_int8_tiny"] == pytest.approx(teacher / (24000 + 4 * whole + 500), abs=0.01)
    assert r["goals"]["video_1_step_int8_tiny_openvino"]["value"] == v["ratio_1_step_int8_tiny"]
    assert "video_1_step_int8_tiny_ort" not in r["goals"]  # int8 is OpenVINO's
    # The UNet's default goals are unchanged: every figure judged, as before.
    assert {"loop_1_step_openvino", "ov_int8_over_fp32"} <= set(brs.goal_check(r))


def test_wan_shape_is_wan2_1_t2v_1_3b_and_the_flop_estimate_is_the_counter_s() -> None:
    """Checked on PyTorch's meta device (shapes, no storage): the real config builds Wan2.1-T2V-1.3B's 1,418,996,800
    parameters, and the closed-form FLOPs of a call at the default clip agree with FlopCounterMode on two blocks."""
    import torch
    from diffusers import WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    shape = wan.SHAPES["wan2.1-t2v-1.3b"]
    assert wan.latent_geometry(shape, 17, 256) == (5, 32)
    with torch.device("meta"):
        full = WanTransformer3DModel(**shape["transformer"])
        assert sum(p.numel() for p in full.parameters()) == 1_418_996_800
        two = WanTransformer3DModel(**{**shape["transformer"], "num_layers": 2})
        with FlopCounterMode(display=False) as counter:
            two(torch.empty(1, 16, 5, 32, 32), torch.tensor([500.0]), encoder_hidden_states=torch.empty(1, 512, 4096), return_dict=False)
    est = wan.transformer_flops({**shape["transformer"], "num_layers": 2}, 1280, 512)
    assert est == pytest.approx(counter.get_total_flops(), rel=0.01)
    assert wan.transformer_flops(shape["transformer"], 1280, 512) == pytest.approx(3.78e12, rel=0.01)
    vae = wan.vae_config(shape)
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == 16 and vae["latents_std"][0] == pytest.approx(2.8184)
    text = wan.text_config(shape, 2)
    assert (text["d_model"], text["d_ff"], text["num_heads"], text["d_kv"], text["num_layers"]) == (4096, 10240, 64, 64, 2)
    with pytest.raises(SystemExit, match="--text-layers 30"):
        wan.text_config(shape, 30)
    with pytest.raises(SystemExit, match="1 \\+ 4k frames"):
        wan.latent_geometry(shape, 16, 256)


def test_results_page_section_for_a_wan_record(tmp_path: Path) -> None:
    from turbo_edge.report.results_page import write_results_page

    medians = json.loads(json.dumps(WAN_MEDIANS))
    wan.scale_text(medians, 12.0)
    medians["openvino"]["stages"]["decode_tiny"] = 500.0
    shape = wan.SHAPES["wan2.1-t2v-1.3b"]
    record = {"decoders": {"tiny": {"width": 64, "parameters": 248435}}, "command": "python benchmarks/bench_real_shape.py --family wan", "family": "wan", "machine": {"platform": "Linux", "cpus": 2},
              "runs": 3, "warmup": 1, "threads": 2, "medians_ms": medians, "flops": WAN_FLOPS, "peak_rss_gib": 17.9,
              "ratios": brs.ratios(medians, WAN_FLOPS, {"threads": 2}, goals=wan.goals({"int8_dot_product": ["avx512_vnni"]})),
              "shape": {"name": "wan2.1-t2v-1.3b", "frames": 17, "pixels": [256, 256], "latent": [5, 32, 32], "tokens": 1280, "text_len": 512,
                        "transformer": shape["transformer"]},
              "text_encoder": {"built": {"num_layers": 2}, "real": {"num_layers": 24}, "scale": 12.0, "why": "memory"},
              "variants": {"unpruned": {"parameters": 1.419e9}, "vdmini": {"parameters": 0.95e9, "removed": [f"blocks.{i}" for i in range(10)]},
                           "vdmini_ch": {"parameters": 0.72e9, "widths": [{"attn1_heads": 9, "attn2_heads": 9, "ffn_dim": 6720}]}}}
    results = tmp_path / "results"
    results.mkdir()
    (results / "real_shape_wan_vnni.json").write_text(json.dumps(record))
    page = Path(write_results_page(results, tmp_path / "results.md")).read_text()
    where = "Wan2.1-T2V-1.3B shape: DiT 30 blocks, 12 heads x 128, FFN 8960, 17 frames at 256x256 pixels (1280 tokens)"
    assert f"| speed | OpenVINO int8 ÷ fp32, per transformer call | 2.50x | {where} | `real_shape_wan_vnni.json` |" in page
    assert "| speed | VDMini plan + heads / FFN ÷ unpruned, per transformer call | openvino 1.89x (0.97 of its 1.95x FLOP ratio) |" in page
    assert "| transformer, VDMini plan + heads / FFN | 8000 |" in page
    assert "| text encoder (scaled to 24 layers), prompt + empty | 43200 |" in page and "| causal VAE decoder, whole clip | 40000 |" in page
    assert "keeps 9 self- and 9 cross-attention heads, FFN 6720 per kept block" in page and "VDMini removes 10 of 30 blocks" in page
    assert "UMT5 built with 2 of its 24 layers" in page
    assert "Per video with the student's tiny decoder (width 64, 248435 parameters" in page
    assert "| openvino | 80.00 | 84500 | 39500 | 18.14 | 38.82 | 0.6 % |" in page


@pytest.mark.slow
def test_wan_tiny_chain_end_to_end(tmp_path: Path) -> None:
    """The Wan chain (WanPipeline.save_pretrained -> turbo-edge export -> the prune stage's block and head / FFN plans ->
    pruned exports -> NNCF int8 -> every backend) at the reduced width: a JSON with every ratio and goal; a rerun
    reuses every artifact."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_real_shape.py"), "--family", "wan", "--shape", "tiny", "--runs", "1", "--warmup", "0",
           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "wan.json")]
    first = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    data = json.loads((tmp_path / "wan.json").read_text())
    assert data["family"] == "wan" and set(data["medians_ms"]) == {"pytorch", "ort", "openvino"}
    assert {"loop_4_step_ort", "prune_vdmini_ch_openvino", "ov_int8_over_fp32", "achieved_over_peak"} <= set(data["ratios"]["goals"])
    for name in ("unpruned_b1", "vdmini_b1", "vdmini_ch_b1"):  # the ONNX graph's FLOPs are PyTorch's
        assert data["flops"]["onnx"][name] == pytest.approx(data["flops"][name], rel=0.02)
    v = data["variants"]
    assert v["unpruned"]["parameters"] > v["vdmini"]["parameters"] > v["vdmini_ch"]["parameters"] and len(v["vdmini"]["removed"]) == 2
    assert v["vdmini_ch"]["widths"] == [{"attn1_heads": 3, "attn2_heads": 3, "ffn_dim": 384}]
    st = data["medians_ms"]["ort"]["stages"]
    assert st["text_b1"] == pytest.approx(12 * st["text_b1_measured"], abs=0.01) and data["text_encoder"]["scale"] == 12
    assert st["decode_tiny"] > 0 and data["decoders"]["tiny"]["width"] == 64  # the tiny decoder, timed beside the full one
    assert data["ratios"]["video"]["ort"]["decoder_full_over_tiny"] == pytest.approx(st["decode"] / st["decode_tiny"], abs=0.01)
    work = tmp_path / "work" / "wan_tiny"
    assert json.loads((work / "channel_plan.json").read_text())["kind"] == "head_ffn_plan"
    assert "VDMini removes" in first.stdout and "int8: NNCF calibration on 16 calls of the transformer" in first.stdout
    assert "Loading weights" not in first.stdout + first.stderr  # quiet: no model-loading bars
    again = subprocess.run(cmd + ["--prepare-only"], check=True, capture_output=True, text=True, env=env)
    assert "teacher: reusing" in again.stdout and "bundle: reusing" in again.stdout
    assert "export:" not in again.stdout and "plans:" not in again.stdout
    # int8 on the first blocks (the real shape's route): its own fp32 graph, the ratio within that group.
    depth = [*cmd[:-1], str(tmp_path / "depth.json"), "--int8-blocks", "3", "--skip", "pytorch,ort,profile"]
    subprocess.run(depth, check=True, capture_output=True, text=True, env=env)
    d = json.loads((tmp_path / "depth.json").read_text())
    g = d["medians_ms"]["openvino"]["int8"]
    assert set(g) == {"depth_b1", "int8_depth_b1"} and d["int8"]["blocks"] == 3 and (work / "transformer_first3.onnx").is_file()
    assert d["ratios"]["precision"]["ov_int8_over_fp32"] == pytest.approx(g["depth_b1"] / g["int8_depth_b1"], abs=1e-3)
    assert d["ratios"]["goals"]["ov_int8_over_fp32"]["goal"] in (1.5, 2.0)
