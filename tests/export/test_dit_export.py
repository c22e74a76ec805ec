"""Export of the DiT (Wan) family: diffusers' own Wan test configuration (``wan_test_dir``) -> a verified bundle.

One bundle (fp32 + fp16 + int8, 9 frames at 32x32, ``--decoder full,tiny`` from ``wan_tiny_dir``: the same model with a
tiny decoder) is exported per module and shared; the runtime runs it through ONNX Runtime and OpenVINO and its frames
are compared with the PyTorch teacher sampler's (``turbo-edge generate``), with either decoder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthetic_bundles import tampered_copy

from turbo_edge.export import BundleError, ContractError, dit, export_bundle, verify_bundle
from turbo_edge.export.contracts import ExportShapes, build_components
from turbo_edge.spec.configs import ExportConfig

GEOMETRY = {"frames": 9, "height": 32, "width": 32}
FAST = {"openvino_check": False, "int8_calibration_prompts": 2, "int8_calibration_steps": 4, "int8_subset_size": 8,
        "int8_bias_correction": False, "int8_scope": "all", "default_steps": 2, "supported_steps": (2, 4), "threads": 2}
PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def wan_bundle(wan_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Wan test model (``wan_tiny_dir``: ``wan_test_dir``'s weights plus a tiny decoder) with both decoders, the full
    one the default."""
    out = tmp_path_factory.mktemp("dit_bundles") / "wan"
    return export_bundle(wan_tiny_dir, out, ExportConfig(precisions=("fp32", "fp16", "int8"), decoders=("full", "tiny"), **GEOMETRY, **FAST))


@pytest.fixture(scope="module")
def tiny_decoder(wan_tiny_dir: Path):
    from turbo_edge.core.tiny_decoder import load_decoder_variant

    return load_decoder_variant(wan_tiny_dir, "tiny")


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from turbo_edge.export.onnx_export import run_ort

    return next(iter(run_ort(path, feeds).values()))


# ------------------------------------------------------------------ the bundle


def test_manifest_carries_the_flow_contract_geometry_and_normalisation(wan_bundle: Path, wan) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    m = verify_bundle(wan_bundle)
    s = m["sampler"]
    assert s["kind"] == "flow_euler_cfg" and s["prediction_type"] == "flow_prediction" and s["uses_cfg"] is True
    assert s["flow_shift"] == 7.0 and s["default_steps"] == 2 and "alphas_cumprod" not in s
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(wan.scheduler.config)
    for steps in (2, 4):  # the runtime's numbers are the diffusers scheduler's own
        scheduler.set_timesteps(steps)
        np.testing.assert_allclose(s["sigmas"][str(steps)], scheduler.sigmas.numpy(), atol=1e-7)
        np.testing.assert_allclose(s["timesteps"][str(steps)], scheduler.timesteps.numpy(), atol=1e-3)
    lat = m["latent"]
    assert (lat["channels"], lat["frames"], lat["height"], lat["width"]) == (16, 3, 4, 4)
    assert (lat["temporal_factor"], lat["spatial_factor"], lat["causal_first_frame"]) == (4, 8, True)
    assert lat["latents_mean"] == [float(v) for v in wan.vae.config.latents_mean]
    assert lat["latents_std"] == [float(v) for v in wan.vae.config.latents_std]
    assert m["video"] == {"frames": 9, "height": 32, "width": 32, "fps": 8, "lead_in_frames": 0}  # the card's lead-in (none here)
    assert m["text"]["max_length"] == 24 and m["text"]["attention_mask"] is True
    comps = m["components"]
    assert [t["name"] for t in comps["text_encoder"]["inputs"]] == ["input_ids", "attention_mask"]
    assert comps["unet"]["inputs"][0]["shape"] == ["batch", 16, 3, 4, 4]
    assert comps["vae_decoder"]["outputs"][0]["shape"] == ["batch", 3, 9, 32, 32]
    # fp16: the transformer only (dit.FP16_COMPONENTS); int8: the transformer, Q/DQ
    assert set(comps["unet"]["files"]) == {"fp32", "fp16", "int8"}
    assert set(comps["text_encoder"]["files"]) == {"fp32"} and set(comps["vae_decoder"]["files"]) == {"fp32"}
    assert (wan_bundle / "tokenizer" / "tokenizer.json").is_file()


def test_eval_skips_the_lead_in_a_bundle_or_a_model_card_records(wan_bundle: Path, wan_test_dir: Path, tmp_path: Path) -> None:
    """eval and demo score a clip from its lead-in on: a bundle's ``video.lead_in_frames``, a model folder's card."""
    from turbo_edge.evaluate import model_lead_in
    from turbo_edge.spec.card import read_card

    assert model_lead_in(wan_bundle) == 0 and model_lead_in("groundtruth") == 0
    bundle = tmp_path / "b"
    shutil.copytree(wan_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["video"]["lead_in_frames"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert model_lead_in(bundle) == 1
    assert model_lead_in(wan_test_dir) == read_card(wan_test_dir).lead_in_frames


def test_every_graph_passes_its_parity_gate_with_margin(wan_bundle: Path) -> None:
    parity = json.loads((wan_bundle / "manifest.json").read_text())["parity"]
    for name in ("text_encoder", "unet", "vae_decoder"):
        assert parity[name]["fp32"]["passed"] and parity[name]["fp32"]["max_abs"] < 1e-4, (name, parity[name]["fp32"])
    assert parity["unet"]["fp16"]["max_abs"] < 0.05
    assert parity["unet"]["int8"]["metric"] == "mean_rel" and parity["unet"]["int8"]["mean_rel"] < 0.1


def test_graphs_have_no_float64_no_scatter_and_no_rms_norm_op(wan_bundle: Path) -> None:
    import onnx

    for name in ("text_encoder", "unet", "vae_decoder"):
        model = onnx.load(str(wan_bundle / f"{name}.onnx"))
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"ScatterND", "ScatterElements", "RMSNormalization"}, (name, ops)
        doubles = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.DOUBLE]
        casts = [n.name for n in model.graph.node if n.op_type == "Cast" and any(a.i == onnx.TensorProto.DOUBLE for a in n.attribute)]
        assert not doubles and not casts, (name, doubles[:3], casts[:3])


def test_a_tampered_graph_is_refused_by_verify_and_the_runtime(wan_bundle: Path, tmp_path: Path) -> None:
    from turbo_edge.runtime import Pipeline

    bad = tampered_copy(wan_bundle, tmp_path / "bad", "unet.onnx")
    with pytest.raises(BundleError, match="unet.onnx .*changed after export"):
        verify_bundle(bad)
    with pytest.raises(BundleError, match="changed after export"):
        Pipeline.from_bundle(bad)


# ------------------------------------------------------------------ the tiny decoder variant (export --decoder full,tiny)


def test_the_tiny_decoder_is_a_hashed_variant_making_the_full_decoders_clip(wan_bundle: Path) -> None:
    m = verify_bundle(wan_bundle)
    assert m["decoders"]["default"] == "full"
    assert m["decoders"]["variants"]["full"] == {"component": "vae_decoder", "layout": "video"}  # the causal whole-clip graph
    assert m["decoders"]["variants"]["tiny"] == {"component": "vae_decoder_tiny", "layout": "clip", "class": "TinyDecoder", "quality": {"psnr_db": 20.0}}
    tiny, full = m["components"]["vae_decoder_tiny"], m["components"]["vae_decoder"]
    # latent [B, z, f, h, w] -> [B, 1 + 4(f - 1), 3, H, W]: the full decoder's frames and size from the same input
    assert tiny["inputs"] == full["inputs"] and tiny["inputs"][0]["shape"] == ["batch", 16, 3, 4, 4]
    assert tiny["outputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 9, 3, 32, 32]}]
    assert full["outputs"][0]["shape"] == ["batch", 3, 9, 32, 32]
    assert tiny["files"]["fp32"] == "vae_decoder_tiny.onnx" and all(f in m["files"] for f in tiny["files"].values())
    assert m["parity"]["vae_decoder_tiny"]["fp32"]["passed"] and m["parity"]["vae_decoder_tiny"]["fp32"]["max_abs"] < 1e-4
    assert "fp16" not in tiny["files"]  # a variant is not an fp16 component (as the UNet's): the runtime falls back to fp32
    # int8 where its gate holds on ONNX Runtime and OpenVINO (measured on this decoder: mean relative error 0.014 on ONNX
    # Runtime, 0.22 on OpenVINO, gate 0.25), else rejected with the backend that failed it and fp32 kept
    rejected = json.loads((wan_bundle / "parity.json").read_text()).get("int8_rejected", {})
    if "int8" in tiny["files"]:
        gate = m["parity"]["vae_decoder_tiny"]["int8"]
        assert gate["passed"] and gate["metric"] == "mean_rel" and gate["mean_rel"] <= 0.25 and "vae_decoder_tiny" not in rejected
    else:
        assert rejected["vae_decoder_tiny"]["backend"] in ("onnxruntime", "openvino") and not rejected["vae_decoder_tiny"]["passed"]


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_runtime_frames_with_the_tiny_decoder_equal_pytorchs(wan_bundle: Path, wan, tiny_decoder, backend: str) -> None:
    """``generate --bundle B --decoder tiny`` against the PyTorch teacher sampler decoding with the same tiny decoder
    (``generate_teacher(..., decoder=)``), and a batch of latents through the variant graph against the module."""
    import torch

    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.runtime import Pipeline

    pipe = Pipeline.from_bundle(wan_bundle, backend=backend, threads=2, decoder="tiny")
    got = pipe.generate(PROMPT, steps=2, seed=3)
    ref = generate_teacher(wan, [PROMPT], steps=2, guidance=pipe.bundle.sampler.guidance, seed=3, decoder=tiny_decoder, **GEOMETRY)[0]
    assert got.shape == ref.shape == (9, 32, 32, 3) and ref.std() > 5
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1, backend
    full = Pipeline.from_bundle(wan_bundle, backend=backend, threads=2).generate(PROMPT, steps=2, seed=3)
    assert np.abs(full.astype(int) - got.astype(int)).mean() > 5  # the full decoder made other frames
    latents = np.random.default_rng(2).standard_normal((2, 16, 3, 4, 4)).astype(np.float32)
    with torch.no_grad():
        frames = np.rint((tiny_decoder(torch.from_numpy(latents)).clamp(-1, 1).numpy() + 1) * 127.5).astype(int).transpose(0, 1, 3, 4, 2)
    decoded = pipe.decode(latents)
    assert decoded.shape == frames.shape == (2, 9, 32, 32, 3) and np.abs(decoded.astype(int) - frames).max() <= 1
    assert np.abs(frames[:, 1:] - frames[:, :-1]).mean() > 1  # the frames differ in time: an order mistake would show


def test_a_tampered_tiny_decoder_graph_is_refused(wan_bundle: Path, tmp_path: Path) -> None:
    from turbo_edge.runtime import Pipeline

    bad = tampered_copy(wan_bundle, tmp_path / "bad", "vae_decoder_tiny.onnx")
    with pytest.raises(BundleError, match="vae_decoder_tiny.onnx .*changed after export"):
        verify_bundle(bad)
    with pytest.raises(BundleError, match="vae_decoder_tiny.onnx .*changed after export"):
        Pipeline.from_bundle(bad, decoder="tiny")


def test_a_decoder_made_for_another_clip_is_refused_in_one_line(wan, wan_test_dir: Path, tmp_path: Path, capsys) -> None:
    """A variant must make the full decoder's clip from its latents: one without the causal time upsampling, or made for
    other latent channels, is refused at export naming the shapes; a model without the variant, naming its decoders."""
    from turbo_edge.cli import main
    from turbo_edge.core.tiny_decoder import TinyDecoder

    shapes = ExportShapes(9, 32, 32)
    per_frame = TinyDecoder(latent_channels=16, channels=(16, 16, 16, 16))  # no temporal upsampling: 3 frames, not 9
    with pytest.raises(ContractError) as err:
        dit.decoder_variant_component(wan, shapes, "tiny", per_frame)
    assert "\n" not in str(err.value) and "into frames [1, 3, 3, 32, 32]" in str(err.value) and "makes [1, 9, 3, 32, 32]" in str(err.value)
    other = TinyDecoder.for_autoencoder_wan({"z_dim": 4, "temperal_downsample": [False, True, True]}, width=16)
    with pytest.raises(ContractError, match=r"cannot decode this model's latents \[1, 16, 3, 4, 4\]"):
        dit.decoder_variant_component(wan, shapes, "tiny", other)
    rc = main(["export", "--model", str(wan_test_dir), "--out", str(tmp_path / "b"), "--precision", "fp32", "--decoder", "full,tiny",
               "--frames", "9", "--height", "32", "--width", "32"])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err_lines) == 1 and "has no 'tiny' decoder; it has ['full']" in err_lines[0] and not (tmp_path / "b").exists()


# ------------------------------------------------------------------ the runtime against PyTorch


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_runtime_frames_equal_the_pytorch_teacher_sampler(wan_bundle: Path, wan, backend: str) -> None:
    """``turbo-edge generate --model DIR --steps 2 --frames 9 --height 32 --width 32`` against the bundle's runtime."""
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.runtime import Pipeline

    pipe = Pipeline.from_bundle(wan_bundle, backend=backend, threads=2)
    for steps, seed in ((2, 3), (4, 0)):
        got = pipe.generate(PROMPT, steps=steps, seed=seed)
        ref = generate_teacher(wan, [PROMPT], steps=steps, guidance=pipe.bundle.sampler.guidance, seed=seed, **GEOMETRY)[0]
        assert got.shape == ref.shape == (9, 32, 32, 3)
        assert ref.std() > 5  # a clip with content, not a flat frame
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1, (backend, steps)


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_int8_and_fp16_bundles_generate_close_to_fp32(wan_bundle: Path, backend: str) -> None:
    from turbo_edge.runtime import Pipeline

    ref = Pipeline.from_bundle(wan_bundle, backend=backend, threads=2).generate(PROMPT, seed=1).astype(int)
    for precision in ("int8", "fp16"):
        got = Pipeline.from_bundle(wan_bundle, backend=backend, precision=precision, threads=2).generate(PROMPT, seed=1).astype(int)
        diff = np.abs(got - ref)
        assert diff.mean() < 2.0, (backend, precision, diff.mean())


def test_a_clip_length_outside_the_bundle_is_refused_in_one_line(wan_bundle: Path) -> None:
    from turbo_edge.runtime import Pipeline
    from turbo_edge.spec.errors import RuntimeInputError

    pipe = Pipeline.from_bundle(wan_bundle)
    with pytest.raises(RuntimeInputError, match=r"1 \+ 4k frames, got 8"):
        pipe.generate(PROMPT, frames=8)
    with pytest.raises(RuntimeInputError, match="outside the bundle's profile"):
        pipe.generate(PROMPT, frames=13)


# ------------------------------------------------------------------ the parts, in PyTorch and ONNX


def test_the_exportable_transformer_equals_diffusers_and_is_restored(wan) -> None:
    import torch
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanRotaryPosEmbed

    t = wan.unet
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 16, 3, 4, 4, generator=g), torch.randn(2, 24, 32, generator=g)
    ts = torch.tensor([999.0, 437.5])
    with torch.no_grad():
        ref = t(x, ts, encoder_hidden_states=text, return_dict=False)[0]
        with dit.exportable(t):
            assert not any(isinstance(m, torch.nn.RMSNorm) for m in t.modules())
            assert t.rope.cos.dtype == torch.float32
            got = t(x, ts, encoder_hidden_states=text, return_dict=False)[0]
    assert (got - ref).abs().max().item() < 1e-5
    assert isinstance(t.rope, WanRotaryPosEmbed)
    assert all(isinstance(p, WanAttnProcessor) for p in t.attn_processors.values())
    assert sum(isinstance(m, torch.nn.RMSNorm) for m in t.modules()) == 2 * 2 * len(t.blocks)  # norm_q, norm_k of attn1 and attn2


def test_the_causal_decoder_matches_diffusers_frame_by_frame_at_every_boundary(wan_bundle: Path, wan) -> None:
    """The whole-clip graph against diffusers' own decode (one latent frame per call, with its cache), frame by frame:
    latent frame 0 -> pixel frame 0, latent frame k -> pixel frames 4k-3 .. 4k; the boundary frames are where a
    wrong cache order shows (seams every 4 frames)."""
    import torch

    rng = np.random.default_rng(5)
    latent = rng.standard_normal((2, 16, 3, 4, 4)).astype(np.float32)
    got = _ort(wan_bundle / "vae_decoder.onnx", {"latent": latent})
    with torch.no_grad():
        ref = wan.components.autoencoder.decode_pixels(wan.vae, torch.from_numpy(latent)).clamp(-1, 1).permute(0, 2, 1, 3, 4).numpy()
    assert got.shape == ref.shape == (2, 3, 9, 32, 32)
    per_frame = np.abs(got - ref).max(axis=(0, 1, 3, 4))
    assert per_frame.max() < 1e-4, per_frame
    # What `decoder train` distils a Wan tiny decoder against (from the same normalised latents) is this graph's decode:
    # the variant takes the latents the full graph takes, with no normalisation of its own.
    from turbo_edge.core.tiny_decoder import AutoencoderKLWanTarget

    with torch.no_grad():
        target = AutoencoderKLWanTarget(wan.vae).frames(torch.from_numpy(latent)).permute(0, 2, 1, 3, 4).numpy()
    assert np.abs(got - target).max() < 1e-4
    # The frames differ from each other (the check has something to catch): a seam would be a jump at 1 and 5.
    assert np.abs(ref[:, :, 1] - ref[:, :, 0]).mean() > 1e-3 and np.abs(ref[:, :, 5] - ref[:, :, 4]).mean() > 1e-3


def test_the_text_encoder_graph_zeroes_past_the_mask_as_wan_pipeline(wan_bundle: Path, wan) -> None:
    import torch

    tokens = wan.components.text.tokenize(wan.text_encoder, wan.tokenizer, [PROMPT, ""])
    feeds = {"input_ids": tokens["input_ids"].numpy(), "attention_mask": tokens["attention_mask"].numpy()}
    got = _ort(wan_bundle / "text_encoder.onnx", feeds)
    with torch.no_grad():
        ref = wan.encode_prompts([PROMPT, ""]).numpy()
    assert np.abs(got - ref).max() < 1e-4
    length = int(feeds["attention_mask"][1].sum())
    assert length == 1 and np.all(got[1, length:] == 0) and np.abs(got[1, 0]).max() > 0


def test_a_student_transformer_exports_its_guidance_embedding(wan_test_dir: Path, tmp_path: Path) -> None:
    import torch

    from turbo_edge.core.denoiser import attach_wan_guidance_embedding
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.export.onnx_export import export_onnx, run_torch
    from turbo_edge.export.parity import check_parity, ort_runner

    student_dir = tmp_path / "student"
    shutil.copytree(wan_test_dir, student_dir)
    model = load_teacher(wan_test_dir)
    attach_wan_guidance_embedding(model.unet, 8)
    torch.nn.init.normal_(model.unet.condition_embedder.time_embedder.cond_proj.weight, std=0.5)  # trained, not zero
    model.unet.save_pretrained(student_dir / "transformer", safe_serialization=True)
    student = load_teacher(student_dir)
    contract, module = build_components(student, ExportShapes(9, 32, 32, uses_cfg=False), ("unet",), dit.COMPONENTS)["unet"]
    assert [t.name for t in contract.inputs] == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    path = tmp_path / "unet.onnx"
    export_onnx(module, contract, path)
    result = check_parity(contract, "fp32", lambda f: run_torch(module, contract, f), ort_runner(path))
    assert result.passed and result.max_abs < 1e-4
    feeds = contract.sample_inputs("opt")
    other = {**feeds, "timestep_cond": feeds["timestep_cond"] + 1.0}
    assert np.abs(_ort(path, feeds) - _ort(path, other)).max() > 1e-3  # the graph listens to the guidance input


@pytest.mark.parametrize(("size", "rule"), [({"frames": 8}, r"1 \+ 4k frames"), ({"height": 24}, "multiples of 16"),
                                            ({"min_frames": 3, "max_frames": 13}, r"1 \+ 4k frames")])
def test_a_geometry_the_dit_cannot_take_is_refused_before_anything_is_written(wan_test_dir: Path, tmp_path: Path, size, rule) -> None:
    cfg = ExportConfig(precisions=("fp32",), **{**GEOMETRY, **size}, **FAST)
    with pytest.raises(ContractError, match=rule):
        export_bundle(wan_test_dir, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a second export (~30 s on 2 busy cores)
def test_a_dynamic_spatial_bundle_serves_every_size_in_its_profile(wan_test_dir: Path, wan, tmp_path: Path) -> None:
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.runtime import Pipeline
    from turbo_edge.spec.errors import RuntimeInputError

    cfg = ExportConfig(precisions=("fp32",), dynamic_spatial=True, **GEOMETRY, **FAST)
    out = export_bundle(wan_test_dir, tmp_path / "dyn", cfg)
    unet = json.loads((out / "manifest.json").read_text())["components"]["unet"]
    assert unet["profile"]["min"]["sample"][3:] == [2, 2] and unet["profile"]["max"]["sample"][3:] == [8, 8]
    pipe = Pipeline.from_bundle(out, threads=2)
    for size in (16, 64):  # the profile's ends (the parity gate ran there too)
        got = pipe.generate(PROMPT, steps=2, seed=1, height=size, width=size)
        ref = generate_teacher(wan, [PROMPT], steps=2, guidance=pipe.bundle.sampler.guidance, seed=1, frames=9, height=size, width=size)[0]
        assert got.shape == (9, size, size, 3) and np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    with pytest.raises(RuntimeInputError, match="outside the bundle's profile"):
        pipe.generate(PROMPT, height=80, width=80)


def test_the_dit_export_config_narrows_fp16_and_warns_of_a_conv_int8_scope(caplog) -> None:
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), int8_scope="conv")
    with caplog.at_level("WARNING", logger="turbo_edge.export.dit"):
        narrowed = dit.export_config(cfg)
    assert narrowed.fp16_components == dit.FP16_COMPONENTS == ("unet",)
    assert "quantizes the patch embedding alone" in caplog.text
    explicit = ExportConfig(precisions=("fp32", "fp16"), fp16_components=("unet", "vae_decoder"))
    assert dit.export_config(explicit).fp16_components == ("unet", "vae_decoder")  # named by the user: kept, and gated


def test_tensorrt_engines_are_planned_from_the_dit_bundle_profiles(wan_bundle: Path, tmp_path: Path) -> None:
    """The TensorRT build's CPU side on the DiT bundle (a fake ``tensorrt``: no engine is built or run here): one
    profile per graph from the manifest, the mask and the whole-clip latent included, the fp16 / int8 transformer."""
    from test_export_tensorrt import GPU, FakeTRT

    from turbo_edge.export.tensorrt_build import EngineConfig, build_engines

    root = tmp_path / "bundle"
    shutil.copytree(wan_bundle, root)
    trt = FakeTRT()
    plans = build_engines(root, EngineConfig(bundle=str(root), precisions=("fp32", "fp16", "int8")), trt=trt, gpu=GPU)
    tiny = [f"vae_decoder_tiny.{p}" for p in verify_bundle(root)["components"]["vae_decoder_tiny"]["files"]]  # fp32, int8 where its gate held
    assert sorted(p.name.split(".")[0] + "." + p.name.split(".")[1] for p in plans) == sorted([  # fp16 / int8: the transformer's graphs only
        "text_encoder.fp32", "unet.fp16", "unet.fp32", "unet.int8", "vae_decoder.fp32", *tiny])  # engine's default: every graph
    shapes = {c[1]: c[2:] for c in trt.calls if c[0] == "set_shape"}
    assert shapes["attention_mask"] == ((1, 24), (2, 24), (4, 24))
    assert shapes["sample"] == ((1, 16, 3, 4, 4), (2, 16, 3, 4, 4), (4, 16, 3, 4, 4))
    assert shapes["latent"] == ((1, 16, 3, 4, 4), (1, 16, 3, 4, 4), (2, 16, 3, 4, 4))
    assert set(verify_bundle(root)["engines"]) == {"text_encoder", "unet", "vae_decoder", "vae_decoder_tiny"}
    # `turbo-edge engine`'s default (fp16): the transformer's fp16 graph, UMT5's and the decoder's fp32 ones (they have no fp16)
    default = build_engines(root, EngineConfig(bundle=str(root)), trt=FakeTRT(), gpu=GPU, dry_run=True)
    assert sorted(".".join(p.name.split(".")[:2]) for p in default) == ["text_encoder.fp32", "unet.fp16", "vae_decoder.fp32", "vae_decoder_tiny.fp32"]


def test_bench_times_a_dit_bundle_per_stage(wan_bundle: Path, tmp_path: Path) -> None:
    from turbo_edge.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--bundle", str(wan_bundle), "--backend", "ort", "--precision", "fp32", "--runs", "1", "--warmup", "0",
                 "--decoder", "full,tiny", "--json", str(out)]) in (0, None)
    rows = json.loads(out.read_text())["rows"]
    assert [r["decoder"] for r in rows] == ["full", "tiny"] and rows[1]["row"].endswith("tiny decoder")
    stages = [{s["stage"]: s for s in r["stages"]} for r in rows]
    for row, stage in zip(rows, stages):
        assert row["sampler"] == "flow_euler_cfg" and row["video"] == {"frames": 9, "height": 32, "width": 32}
        assert row["input_shapes"]["text_encoder"] == {"input_ids": [1, 24], "attention_mask": [1, 24]}
        assert row["input_shapes"]["vae_decoder"] == {"latent": [1, 16, 3, 4, 4]}
        assert all(stage[n]["gflop"] > 0 and stage[n]["median_ms"] > 0 for n in ("text_encoder", "unet", "vae_decoder"))
    assert stages[0]["unet"]["gflop"] == stages[1]["unet"]["gflop"]  # one sampler; the decoder stage counts the chosen graph
    assert stages[1]["vae_decoder"]["gflop"] != stages[0]["vae_decoder"]["gflop"]
