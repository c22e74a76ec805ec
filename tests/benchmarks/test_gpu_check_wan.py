"""benchmarks/gpu_check_wan.py's CPU side: the Wan2.1 configs against the installed diffusers, the clip / token
arithmetic, the dtype rule, feeds from a DiT bundle's manifest, and ``gpu_check.py --device cpu --tiny`` end to end
(the three Wan paths' wiring on this CPU: the tiny transformer and decoder timed on the host clock, the tiny Wan model
exported by turbo-edge's own export and its engines planned). Nothing here runs a GPU path."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_wan as wan  # noqa: E402  (the module gpu_check.py imports, by the same name)

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ configs


def test_wan_configs_are_the_releases_and_diffusers_takes_them():
    """Wan2.1-T2V-1.3B: patch (1, 2, 2), 12 heads x 128, FFN 8960, 30 layers, in / out 16, text 4096, freq 256, RMS q/k norm
    across heads, eps 1e-6, RoPE 1024; its VAE: base 96, z 16, dim_mult [1, 2, 4, 4], 2 res blocks, temporal downsample
    [False, True, True]. Built on the meta device by the installed diffusers, whose signatures name every key."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    t = wan.WAN_TRANSFORMER
    assert (tuple(t["patch_size"]), t["num_attention_heads"], t["attention_head_dim"], t["ffn_dim"], t["num_layers"]) == ((1, 2, 2), 12, 128, 8960, 30)
    assert (t["in_channels"], t["out_channels"], t["text_dim"], t["freq_dim"], t["eps"], t["rope_max_seq_len"]) == (16, 16, 4096, 256, 1e-6, 1024)
    assert t["cross_attn_norm"] is True and t["qk_norm"] == "rms_norm_across_heads"
    v = wan.WAN_VAE
    assert (v["base_dim"], v["z_dim"], v["dim_mult"], v["num_res_blocks"], v["temperal_downsample"]) == (96, 16, [1, 2, 4, 4], 2, [False, True, True])
    for cls, cfg in ((WanTransformer3DModel, t), (AutoencoderKLWan, v)):
        assert set(cfg) <= set(inspect.signature(cls.__init__).parameters), cls.__name__
    with torch.device("meta"):
        net, vae = WanTransformer3DModel(**t), AutoencoderKLWan(**v)
    assert sum(p.numel() for p in net.parameters()) == wan.WAN_PARAMETERS["transformer"] == 1_418_996_800
    assert sum(p.numel() for p in vae.parameters()) == wan.WAN_PARAMETERS["vae"] == 126_892_531
    assert len(net.blocks) == 30 and net.blocks[0].attn1.heads == 12 and net.proj_out.in_features == 1536
    assert net.blocks[0].ffn.net[0].proj.out_features == 8960 and net.condition_embedder.text_embedder.linear_1.in_features == 4096
    assert dict(vae.config)["latents_mean"][0] == pytest.approx(-0.7571)  # diffusers' defaults are Wan2.1's normalisation


def test_the_tensorrt_model_keeps_the_block_at_full_width_with_two_layers():
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tcfg, vcfg, text, clip = wan.trt_configs(False)
    assert tcfg == {**wan.WAN_TRANSFORMER, "num_layers": 2} and vcfg == wan.WAN_VAE
    assert text["d_model"] == tcfg["text_dim"] == 4096 and clip == wan.Clip(9, 128, 128, 512)
    with torch.device("meta"):
        net, enc = WanTransformer3DModel(**tcfg), UMT5EncoderModel(UMT5Config(**text))
    per_block = (wan.WAN_PARAMETERS["transformer"] - sum(p.numel() for p in net.parameters())) // 28
    assert sum(p.numel() for p in net.blocks[0].parameters()) == per_block  # the 28 blocks left out are identical to these
    assert enc.config.d_model == 4096 and enc.config.num_layers == 1
    tiny = wan.trt_configs(True)
    assert tiny[0] == wan.TINY_TRANSFORMER and tiny[2]["d_model"] == tiny[0]["text_dim"] == 32


def test_guidance_width_is_the_distillers_default():
    from turbo_edge.spec.configs import DistillConfig

    default = {f.name: f.default for f in dataclasses.fields(DistillConfig)}["w_embedding_dim"]
    assert wan.GUIDANCE_DIM == default == 32
    assert wan.guidance_parameters(wan.WAN_TRANSFORMER) == 32 * 256


# ------------------------------------------------------------------ shapes


def test_480p_clip_is_21x60x104_latents_and_32760_tokens():
    geo = wan.geometry(wan.WAN_TRANSFORMER, wan.WAN_VAE, wan.WAN_CLIP)
    assert geo["latent"] == [16, 21, 60, 104] and geo["patch_grid"] == [21, 30, 52]
    assert geo["tokens"] == 21 * 30 * 52 == 32_760 and geo["decoded_frames"] == 81
    assert geo["text"] == [512, 4096] and geo["pixels"] == [480, 832]
    trt = wan.geometry(*wan.trt_configs(False)[:2], wan.TRT_CLIP)
    assert trt["latent"] == [16, 3, 16, 16] and trt["tokens"] == 3 * 8 * 8 == 192
    assert wan.geometry(wan.TINY_TRANSFORMER, wan.TINY_VAE, wan.TINY_CLIP)["tokens"] == 3 * 2 * 2


@pytest.mark.parametrize("transformer, clip, rule", [
    (wan.WAN_TRANSFORMER, wan.Clip(80, 480, 832, 512), "1 \\+ 4k"),
    (wan.WAN_TRANSFORMER, wan.Clip(81, 488, 832, 512), "multiples of 16"),
    (wan.TINY_TRANSFORMER, wan.WAN_CLIP, "RoPE table covers 32 positions"),  # 52 patches across 832 pixels
])
def test_a_clip_the_model_cannot_take_is_refused_by_the_toolchains_rules(transformer, clip, rule):
    with pytest.raises(ValueError, match=rule):
        wan.geometry(transformer, wan.WAN_VAE, clip)


def test_cases_run_most_valuable_first():
    cases = wan.transformer_cases(("bf16", "fp16"))
    assert cases[:4] == [("bf16", 2, "eager"), ("bf16", 1, "eager"), ("bf16", 2, "cuda_graph"), ("bf16", 1, "cuda_graph")]
    assert len(cases) == 8 and cases[4] == ("fp16", 2, "eager")


# ------------------------------------------------------------------ dtypes


def test_cast_as_loaded_matches_diffusers_from_pretrained(tmp_path):
    """The cast gives every tensor the dtype diffusers' own ``from_pretrained(torch_dtype=bfloat16)`` gives it."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    WanTransformer3DModel(**wan.TINY_TRANSFORMER).save_pretrained(tmp_path / "t", safe_serialization=True)
    loaded = WanTransformer3DModel.from_pretrained(tmp_path / "t", torch_dtype=torch.bfloat16)
    net, kept = wan.cast_as_loaded(WanTransformer3DModel.from_pretrained(tmp_path / "t"), torch.bfloat16)
    ours = {**{n: t.dtype for n, t in net.named_parameters()}, **{n: t.dtype for n, t in net.named_buffers()}}
    theirs = {**{n: t.dtype for n, t in loaded.named_parameters()}, **{n: t.dtype for n, t in loaded.named_buffers()}}
    assert ours == theirs
    assert ours["blocks.0.attn1.to_q.weight"] == torch.bfloat16 and ours["blocks.0.scale_shift_table"] == torch.float32
    assert ours["rope.freqs_cos"] == torch.float32 and ours["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert kept == sum(p.numel() for n, p in net.named_parameters() if p.dtype == torch.float32) > 0


def test_the_students_guidance_embedding_is_kept_fp32_and_starts_at_zero():
    net = wan.build_transformer(wan.TINY_TRANSFORMER, "cpu", seed=0)
    cond = net.condition_embedder.time_embedder.cond_proj
    assert cond.weight.shape == (256, wan.GUIDANCE_DIM) and float(cond.weight.abs().max()) == 0.0
    wan.cast_as_loaded(net, torch.float16)
    assert cond.weight.dtype == torch.float32 and wan.kept_fp32("condition_embedder.time_embedder.cond_proj.weight", net._keep_in_fp32_modules)
    assert not wan.kept_fp32("blocks.0.norm2_extra.weight", ["norm2"])  # a dotted part must equal the name, not contain it
    # the same seed builds the same weights: each precision starts from the fp32 model the reference came from
    again = wan.build_transformer(wan.TINY_TRANSFORMER, "cpu", seed=0)
    assert torch.equal(again.blocks[1].ffn.net[2].weight, wan.build_transformer(wan.TINY_TRANSFORMER, "cpu", seed=0).blocks[1].ffn.net[2].weight)


def test_student_call_equals_the_teacher_calls_first_row():
    """Why one fp32 reference serves both calls: the zero guidance embedding leaves the student's call the teacher's."""
    from turbo_edge.core.denoiser import FAMILIES

    family, net = FAMILIES["WanTransformer3DModel"], wan.build_transformer(wan.TINY_TRANSFORMER, "cpu", seed=0)
    x = wan.transformer_inputs(wan.geometry(wan.TINY_TRANSFORMER, wan.TINY_VAE, wan.TINY_CLIP), seed=0)
    with torch.no_grad():
        teacher, student = family.forward(net, *x[2][:3]), family.forward(net, *x[1])
    assert teacher.shape == (2, 16, 3, 4, 4) and student.shape == (1, 16, 3, 4, 4)
    torch.testing.assert_close(teacher[:1], student, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(teacher[0], teacher[1])


# ------------------------------------------------------------------ feeds from a DiT bundle's manifest


def test_feeds_and_output_shapes_from_a_dit_manifest(tmp_path):
    from dit_bundles import LENGTH, LF, LH, LW, C, make_dit_bundle, teacher_contract

    root, _ = make_dit_bundle(tmp_path / "dit", teacher_contract())
    comps = json.loads((root / "manifest.json").read_text())["components"]
    text = wan.manifest_feeds(comps["text_encoder"], "max", seed=3, vocab=40)
    ids, mask = text["input_ids"], text["attention_mask"]
    assert ids.shape == mask.shape == (4, LENGTH) and ids.dtype == mask.dtype == np.int64
    lengths = mask.sum(axis=1)
    assert lengths[0] == LENGTH and lengths[-1] == 1
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(lengths))  # prefixes of ones
    assert (ids[mask == 0] == 0).all() and ((ids[mask == 1] >= 1) & (ids[mask == 1] < 40)).all()
    unet = wan.manifest_feeds(comps["unet"], "opt")
    assert unet["sample"].shape == (2, C, LF, LH, LW) and unet["sample"].dtype == np.float32
    assert wan.manifest_feeds(comps["vae_decoder"], "min")["latent"].shape == (1, C, LF, LH, LW)
    entry = {**comps["text_encoder"], "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": ["batch", LENGTH, 8]}]}
    assert wan.output_shapes(entry, "max") == {"last_hidden_state": (4, LENGTH, 8)}
    with pytest.raises(ValueError, match="frames"):
        wan.output_shapes({**entry, "outputs": [{"name": "x", "shape": ["batch", "frames"]}]})
    timestep = wan.manifest_feeds({"profile": {"opt": {"timestep": [2]}}, "inputs": [{"name": "timestep", "dtype": "float32"}]})
    assert timestep["timestep"].tolist() == [500.0, 500.0]


# ------------------------------------------------------------------ the whole wiring on this CPU


@pytest.fixture(scope="module")
def tiny_cpu_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_check_tiny")
    results = work / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny", "--work-dir", str(work),
                           "--out-dir", str(results), "--runs", "4", "--wan-seconds", "0.2"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = work / "gpu_cpu_tiny.json"
    assert out.is_file() and not results.exists()  # a wiring check never lands among the results
    return json.loads(out.read_text()), proc.stdout


def test_tiny_cpu_run_records_the_wan_paths_and_skips_the_rest(tiny_cpu_run):
    rec, stdout = tiny_cpu_run
    assert rec["device"] == {"kind": "cpu", "name": "cpu", "gpu_results": False} and rec["tiny"] is True
    statuses = {p: e["status"] for p, e in rec["paths"].items()}
    assert statuses == {"pytorch-cuda-wan": "ran", "pytorch-cuda-wan-vae": "ran", "tensorrt-wan": "ran", "pytorch-cuda-modelscope": "skipped",
                        "pytorch-cuda-builtin": "skipped", "ort-cuda": "skipped", "tensorrt": "skipped"}
    assert "--device cpu" in rec["paths"]["tensorrt"]["reason"]
    rows = [r for r in rec["rows"] if r["path"] == "pytorch-cuda-wan"]
    assert [(r["precision"], r["batch"], r["mode"]) for r in rows] == [("bf16", 2, "eager"), ("bf16", 1, "eager"), ("fp16", 2, "eager"), ("fp16", 1, "eager")]
    for r in rows:
        assert "error" not in r and r["finite"] and r["median_ms"] > 0 and 3 <= r["runs"] <= 4
        assert r["input_shape"] == [r["batch"], 16, 3, 4, 4] and r["tokens"] == 12
        assert 0 < r["max_abs_diff_vs_fp32"] < (0.05 if r["precision"] == "bf16" else 0.01)
    assert rows[0]["max_abs_diff_vs_fp32"] == rows[1]["max_abs_diff_vs_fp32"]  # the teacher's first row is the student's call
    graph_skips = [s["case"] for s in rec["skipped"] if s["path"] == "pytorch-cuda-wan"]
    assert graph_skips == [f"wan-tiny b{b} {p} cuda_graph" for p in ("bf16", "fp16") for b in (2, 1)]
    ratios = {(r["precision"], r["mode"]): r for r in rec["ratios"]}
    assert set(ratios) == {("bf16", "eager"), ("fp16", "eager")}
    r = ratios[("bf16", "eager")]
    assert r["teacher_over_student"] == pytest.approx(50 * rows[0]["median_ms"] / (4 * rows[1]["median_ms"]))
    section = rec["wan_transformer"]
    assert section["geometry"]["tokens"] == 12 and section["fp32_reference"]["finite"]
    assert set(section["weights"]) == {"bf16", "fp16"} and section["weights"]["bf16"]["fp32_kept_parameters"] > 0
    assert "teacher/student wan-tiny bf16 eager" in stdout


def test_tiny_cpu_run_decodes_the_whole_clip(tiny_cpu_run):
    rec, _ = tiny_cpu_run
    [row] = [r for r in rec["rows"] if r["path"] == "pytorch-cuda-wan-vae"]
    assert "error" not in row and row["finite"] and row["precision"] == "bf16"
    assert row["latent_shape"] == [1, 16, 3, 4, 4] and row["video_shape"] == [1, 9, 3, 32, 32]
    assert row["frames_per_s"] == pytest.approx(9 / (row["median_ms"] / 1e3))
    assert "peak_memory_bytes" not in row  # no device memory figures off the GPU


def test_tiny_cpu_run_exports_the_wan_model_and_plans_its_engines(tiny_cpu_run):
    rec, _ = tiny_cpu_run
    section = rec["wan_tensorrt"]
    export = section["export"]
    assert all(r["passed"] for v in export["parity"].values() for r in v.values())
    assert export["files"]["unet"] == {"fp32": "unet.onnx", "fp16": "unet.fp16.onnx"}
    bundle = Path(export["bundle"])
    for files in export["files"].values():  # threshold 0: every graph's weights in external data, as the full-size one has them
        assert all((bundle / (f + ".data")).is_file() for f in files.values())
    planned = {(e["component"], e["precision"]): e for e in section["engines_planned"]}
    assert set(planned) == {("unet", "fp16"), ("vae_decoder", "fp32"), ("text_encoder", "fp32")}
    assert planned[("text_encoder", "fp32")]["profile"] == export["profiles"]["text_encoder"]
    assert planned[("text_encoder", "fp32")]["profile"]["max"] == {"input_ids": [4, 16], "attention_mask": [4, 16]}
    assert section["reference"]["vae_decoder"]["output_shape"] == [1, 3, 9, 32, 32]
    assert section["reference"]["unet"]["output_shape"] == [2, 16, 3, 4, 4]
    assert [s["case"] for s in rec["skipped"] if s["path"] == "tensorrt-wan"] == ["engine builds and runs"]


def test_a_failed_fp32_reference_costs_the_parity_column_only(tmp_path, monkeypatch):
    """fp32 attention at 32,760 tokens can run out of memory on a GPU: the cases still run, without the parity column."""
    import argparse

    from _gpu import Budget, Device

    calls = {"n": 0}
    real = Device.clock_ms

    def first_fails(self, fn):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, fn)

    monkeypatch.setattr(Device, "clock_ms", first_fails)
    record = {"rows": [], "skipped": []}
    out = tmp_path / "rec.json"
    args = argparse.Namespace(device="cpu", tiny=True, seed=0, wan_seconds=0.01, runs=3, out_path=out)
    wan.run_transformer(record, Budget(600), args)
    assert record["wan_transformer"]["fp32_reference"] == {"error": "RuntimeError: CUDA out of memory (simulated)"}
    assert record["skipped"][0]["case"] == "wan-tiny fp32 reference"
    rows = record["rows"]
    assert len(rows) == 4 and all("error" not in r and r["median_ms"] > 0 and "max_abs_diff_vs_fp32" not in r for r in rows)
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))  # written as measured
