"""A Wan bundle serving a range of clip lengths (#31): ``export --frames 9 --min-frames 5 --max-frames 13``.

The causal decoder becomes two step graphs with its cache explicit (``vae_decoder_first`` on latent frame 0, then
``vae_decoder`` once per later latent frame), the transformer's latent frames a dynamic axis; the runtimes loop over
the clip's latent frames. One bundle (fp32 + int8, the full decoder and a tiny one, from ``wan_tiny_dir``) is exported
per module (fp32 + fp16 + int8: fp16 and int8 the transformer's) and checked against diffusers' own decode and
``turbo-edge generate --model`` at several lengths.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from turbo_edge.export import ContractError, dit, export_bundle, verify_bundle
from turbo_edge.spec.configs import ExportConfig

RANGE = {"frames": 9, "min_frames": 5, "max_frames": 13, "height": 32, "width": 32}
FAST = {"openvino_check": False, "int8_calibration_prompts": 2, "int8_calibration_steps": 2, "int8_subset_size": 4,
        "int8_bias_correction": False, "int8_scope": "all", "default_steps": 2, "supported_steps": (2,), "threads": 2}
PROMPT = "a red circle moving left"
LENGTHS = (5, 13)  # the range's ends (the bundle's default is 9)


@pytest.fixture(scope="module")
def range_bundle(wan_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dit_range") / "wan"
    return export_bundle(wan_tiny_dir, out, ExportConfig(precisions=("fp32", "fp16", "int8"), decoders=("full", "tiny"), **RANGE, **FAST))


def _step_decode(bundle: Path, latent: np.ndarray) -> np.ndarray:
    """The bundle's step graphs looped over the latent frames on ONNX Runtime, as the runtimes loop them: [B, 3, F, H, W]."""
    from turbo_edge.export.onnx_export import ort_session

    first, step = ort_session(bundle / "vae_decoder_first.onnx"), ort_session(bundle / "vae_decoder.onnx")
    names = [o.name for o in first.get_outputs()]
    out = dict(zip(names, first.run(names, {"latent": latent[:, :, :1]})))
    frames = [out.pop("video")]
    for k in range(1, latent.shape[2]):
        feeds = {"latent": latent[:, :, k : k + 1], **{n.removeprefix("next_"): v for n, v in out.items()}}
        out = dict(zip(names, step.run(names, feeds)))
        frames.append(out.pop("video"))
    return np.concatenate(frames, axis=2)


# ------------------------------------------------------------------ the bundle


def test_the_manifest_declares_the_range_and_the_step_decoder(range_bundle: Path) -> None:
    m = verify_bundle(range_bundle)
    assert m["schema_version"] == 2  # a schema-1 reader refuses it ("upgrade turbo-edge") instead of calling a step as a clip
    comps = m["components"]
    assert comps["unet"]["inputs"][0]["shape"] == ["batch", 16, "latent_frames", 4, 4]
    assert [comps["unet"]["profile"][p]["sample"][2] for p in ("min", "opt", "max")] == [2, 3, 4]  # 5, 9, 13 frames
    first, step = comps["vae_decoder_first"], comps["vae_decoder"]
    assert first["inputs"] == [{"name": "latent", "dtype": "float32", "shape": ["batch", 16, 1, 4, 4]}]
    assert step["inputs"][0] == first["inputs"][0] and len(step["inputs"]) > 1
    caches = step["inputs"][1:]
    assert [c["name"] for c in caches] == [f"cache_{i}" for i in range(len(caches))]
    assert [o["name"] for o in first["outputs"]] == [o["name"] for o in step["outputs"]] == ["video", *(f"next_{c['name']}" for c in caches)]
    assert first["outputs"][0]["shape"] == ["batch", 3, 1, 32, 32] and step["outputs"][0]["shape"] == ["batch", 3, 4, 32, 32]
    assert all(c["shape"][0] == "batch" and c["shape"][2] == 2 for c in caches)
    assert [c["shape"] for c in caches] == [o["shape"] for o in step["outputs"][1:]] == [o["shape"] for o in first["outputs"][1:]]
    assert m["decoders"]["variants"]["full"] == {"component": "vae_decoder", "layout": "steps"}
    tiny = comps["vae_decoder_tiny"]  # no causal cache: one graph, dynamic in frames
    assert tiny["inputs"][0]["shape"] == ["batch", 16, "latent_frames", 4, 4] and tiny["outputs"][0]["shape"] == ["batch", "frames", 3, 32, 32]
    for name in ("vae_decoder_first", "vae_decoder", "unet", "vae_decoder_tiny"):
        assert m["parity"][name]["fp32"]["passed"] and m["parity"][name]["fp32"]["max_abs"] < 1e-4, (name, m["parity"][name])
    assert set(first["files"]) == set(step["files"]) == {"fp32"} and set(comps["unet"]["files"]) == {"fp32", "fp16", "int8"}  # the transformer's
    assert m["parity"]["unet"]["fp16"]["max_abs"] < 0.05 and m["parity"]["unet"]["int8"]["mean_rel"] < 0.1


def test_a_schema_1_reader_would_refuse_it_and_this_one_checks_the_pair(range_bundle: Path, tmp_path: Path) -> None:
    from turbo_edge.spec import bundle as schema
    from turbo_edge.spec.errors import BundleError

    bad = tmp_path / "bad"
    shutil.copytree(range_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["schema_version"] = 1  # a step decoder under schema 1: what an old reader would run as a whole clip
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match='"steps" layout, which only the full decoder of a schema 2 bundle'):
        schema.load_bundle(bad, verify=False)
    with pytest.raises(ValueError, match="may not be named 'first'"):
        ExportConfig(decoders=("full", "first"))


# ------------------------------------------------------------------ the decoder's step loop against diffusers


@pytest.mark.parametrize("frames", [5, 9, 13])
def test_the_step_loop_equals_diffusers_decode_at_every_frame_boundary(range_bundle: Path, wan, frames: int) -> None:
    """The exported step graphs looped over 2-4 latent frames against diffusers' ``vae.decode`` of the whole clip, frame
    by frame: latent frame k makes pixel frames 4k-3 .. 4k, so frames 0/1, 4/5, 8/9, 12 are the seams where a cache
    fed back in the wrong order, or the first frame's zero padding, would show."""
    import torch

    f = 1 + (frames - 1) // 4
    latent = np.random.default_rng(frames).standard_normal((2, 16, f, 4, 4)).astype(np.float32)
    got = _step_decode(range_bundle, latent)
    with torch.no_grad():
        ref = wan.components.autoencoder.decode_pixels(wan.vae, torch.from_numpy(latent)).clamp(-1, 1).permute(0, 2, 1, 3, 4).numpy()
        # the same loop in PyTorch (dit.decoder_step, the graphs' function) is diffusers' decode to the last bit
        mean, std = wan.components.autoencoder._stats(wan.vae, torch.from_numpy(latent))
        x = wan.vae.post_quant_conv(torch.from_numpy(latent) * std + mean)
        out, cache = dit.decoder_step(wan.vae, x[:, :, :1], (), first=True)
        eager = [out]
        for k in range(1, f):
            out, cache = dit.decoder_step(wan.vae, x[:, :, k : k + 1], tuple(cache), first=False)
            eager.append(out)
    assert got.shape == ref.shape == (2, 3, frames, 32, 32)
    assert torch.equal(torch.cat(eager, 2), torch.from_numpy(ref))
    per_frame = np.abs(got - ref).max(axis=(0, 1, 3, 4))
    boundaries = [j for j in range(frames) if j % 4 in (0, 1)]
    assert per_frame[boundaries].max() < 1e-4 and per_frame.max() < 1e-4, per_frame
    assert np.abs(ref[:, :, 1] - ref[:, :, 0]).mean() > 1e-3 and np.abs(ref[:, :, -1] - ref[:, :, -2]).mean() > 1e-3  # frames differ


# ------------------------------------------------------------------ the runtime at two lengths against PyTorch


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_runtime_frames_equal_the_pytorch_teacher_at_two_lengths(range_bundle: Path, wan, backend: str) -> None:
    """``turbo-edge generate --model DIR --frames N`` against one bundle's runtime at N = 5 and 13."""
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.runtime import Pipeline

    pipe = Pipeline.from_bundle(range_bundle, backend=backend, threads=2)
    for frames in LENGTHS:
        got = pipe.generate(PROMPT, steps=2, seed=3, frames=frames)
        ref = generate_teacher(wan, [PROMPT], steps=2, guidance=pipe.bundle.sampler.guidance, seed=3, frames=frames, height=32, width=32)[0]
        assert got.shape == ref.shape == (frames, 32, 32, 3) and ref.std() > 5
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1, (backend, frames)


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_the_tiny_decoder_int8_and_fp16_serve_every_length(range_bundle: Path, wan_tiny_dir: Path, wan, backend: str) -> None:
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.core.tiny_decoder import load_decoder_variant
    from turbo_edge.runtime import Pipeline

    tiny = Pipeline.from_bundle(range_bundle, backend=backend, threads=2, decoder="tiny")
    got = tiny.generate(PROMPT, steps=2, seed=3, frames=13)
    ref = generate_teacher(wan, [PROMPT], steps=2, guidance=tiny.bundle.sampler.guidance, seed=3, decoder=load_decoder_variant(wan_tiny_dir, "tiny"),
                           frames=13, height=32, width=32)[0]
    assert got.shape == ref.shape == (13, 32, 32, 3) and np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    fp32 = Pipeline.from_bundle(range_bundle, backend=backend, threads=2).generate(PROMPT, steps=2, seed=1, frames=5).astype(int)
    for precision in ("int8", "fp16"):
        got = Pipeline.from_bundle(range_bundle, backend=backend, threads=2, precision=precision).generate(PROMPT, steps=2, seed=1, frames=5).astype(int)
        assert got.shape == fp32.shape == (5, 32, 32, 3) and np.abs(got - fp32).mean() < 2.0, precision


def test_a_length_outside_the_range_or_not_1_plus_4k_is_refused_in_one_line(range_bundle: Path) -> None:
    from turbo_edge.runtime import Pipeline
    from turbo_edge.spec.errors import RuntimeInputError

    pipe = Pipeline.from_bundle(range_bundle)
    for frames, said in ((8, r"takes 1 \+ 4k frames \(5 to 13 frames in this bundle\), got 8"),
                         (17, "frames 17 is outside this bundle's clip lengths, 5 to 13 frames"),
                         (1, "frames 1 is outside this bundle's clip lengths, 5 to 13 frames")):
        with pytest.raises(RuntimeInputError, match=said) as err:
            pipe.generate(PROMPT, frames=frames)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ export's checks and the TensorRT plan


@pytest.mark.parametrize(("size", "rule"), [({"min_frames": 4}, r"1 \+ 4k frames"), ({"max_frames": 15}, r"1 \+ 4k frames"),
                                            ({"frames": 17, "max_frames": 21, "min_frames": 5, "height": 32}, None),
                                            ({"static": True}, "--static fixes every axis")])
def test_a_range_the_dit_cannot_take_is_refused_before_anything_is_written(wan_test_dir: Path, tmp_path: Path, size, rule) -> None:
    from turbo_edge.core.pipeline_io import load_teacher

    cfg = ExportConfig(precisions=("fp32",), **{**RANGE, **size}, **FAST)
    if rule is None:  # frames 17 inside [5, 21]: resolved, not exported here
        shapes = dit.resolve_shapes(load_teacher(wan_test_dir), cfg, uses_cfg=True)
        assert (shapes.min_frames, shapes.frames, shapes.max_frames) == (5, 17, 21)
        return
    with pytest.raises(ContractError, match=rule):
        export_bundle(wan_test_dir, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_tensorrt_profiles_span_the_range_and_build_both_decoder_steps(range_bundle: Path, tmp_path: Path) -> None:
    """The TensorRT build's CPU side (a fake ``tensorrt``: nothing is built or run on a GPU here)."""
    from test_export_tensorrt import GPU, FakeTRT

    from turbo_edge.export.tensorrt_build import EngineConfig, build_engines

    root = tmp_path / "bundle"
    shutil.copytree(range_bundle, root)
    named = build_engines(root, EngineConfig(bundle=str(root), precisions=("fp32",), components=("unet", "vae_decoder")), trt=FakeTRT(), gpu=GPU,
                          dry_run=True)
    assert [p.name.split(".")[0] for p in named] == ["unet", "vae_decoder_first", "vae_decoder"]  # the first step goes with its decoder
    trt = FakeTRT()
    plans = build_engines(root, EngineConfig(bundle=str(root), precisions=("fp32",)), trt=trt, gpu=GPU)  # default: every graph
    assert sorted(p.name.split(".")[0] for p in plans) == ["text_encoder", "unet", "vae_decoder", "vae_decoder_first", "vae_decoder_tiny"]
    shapes = [c[1:] for c in trt.calls if c[0] == "set_shape"]
    assert ("sample", (1, 16, 2, 4, 4), (2, 16, 3, 4, 4), (4, 16, 4, 4, 4)) in shapes  # 5 to 13 frames
    assert ("latent", (1, 16, 1, 4, 4), (1, 16, 1, 4, 4), (2, 16, 1, 4, 4)) in shapes  # one latent frame per step
    assert any(name == "cache_0" for name, *_ in shapes)
    assert {"vae_decoder", "vae_decoder_first"} <= set(verify_bundle(root)["engines"])


def test_generate_bundle_takes_the_clip_length_from_the_command_line(range_bundle: Path, tmp_path: Path, capsys) -> None:
    from turbo_edge.cli import main

    assert main(["generate", PROMPT, "--bundle", str(range_bundle), "--frames", "13", "--steps", "2", "--out", str(tmp_path / "a.gif")]) in (0, None)
    assert "(13 frames, 32x32" in capsys.readouterr().out
    rc = main(["generate", PROMPT, "--bundle", str(range_bundle), "--frames", "17", "--out", str(tmp_path / "b.gif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "outside this bundle's clip lengths, 5 to 13 frames" in err[0] and not (tmp_path / "b.gif").exists()


@pytest.mark.slow  # a second export (~25 s on 2 busy cores)
def test_fp16_step_decoder_graphs_are_converted_and_gated_when_asked(wan_test_dir: Path, tmp_path: Path) -> None:
    """``fp16_components`` naming the decoder converts both step graphs and gates each (at a loose tolerance here: the
    causal decoder's fp16 error is why a DiT bundle keeps it fp32 by default); the runtime then loops the fp16 graphs."""
    from turbo_edge.runtime import Pipeline

    cfg = ExportConfig(precisions=("fp32", "fp16"), fp16_components=("unet", "vae_decoder"), tolerance_fp16=2.0, **RANGE, **FAST)
    out = export_bundle(wan_test_dir, tmp_path / "fp16", cfg)
    m = verify_bundle(out)
    for name in ("vae_decoder_first", "vae_decoder"):
        assert m["components"][name]["files"]["fp16"] == f"{name}.fp16.onnx" and m["parity"][name]["fp16"]["passed"]
    fp32 = Pipeline.from_bundle(out, threads=2).generate(PROMPT, steps=2, seed=1, frames=13).astype(int)
    fp16 = Pipeline.from_bundle(out, threads=2, precision="fp16").generate(PROMPT, steps=2, seed=1, frames=13).astype(int)
    assert fp16.shape == fp32.shape == (13, 32, 32, 3) and np.abs(fp16 - fp32).mean() < 2.0


def test_bench_times_a_range_bundle_with_its_step_decoder(range_bundle: Path, tmp_path: Path) -> None:
    """``bench --bundle``: the decoder stage is the first graph plus one step per later latent frame (FLOPs counted so)."""
    from turbo_edge.cli import main
    from turbo_edge.runtime import Pipeline
    from turbo_edge.runtime.flops import onnx_flops

    out = tmp_path / "bench.json"
    assert main(["bench", "--bundle", str(range_bundle), "--backend", "ort", "--precision", "fp32", "--runs", "1", "--warmup", "0",
                 "--json", str(out)]) in (0, None)
    row = json.loads(out.read_text())["rows"][0]
    stage = {s["stage"]: s for s in row["stages"]}["vae_decoder"]
    caches = Pipeline.from_bundle(range_bundle).cache_shapes(1, 4, 4)
    first = onnx_flops(range_bundle / "vae_decoder_first.onnx", {"latent": (1, 16, 1, 4, 4)})
    step = onnx_flops(range_bundle / "vae_decoder.onnx", {"latent": (1, 16, 1, 4, 4), **caches})
    assert row["input_shapes"]["vae_decoder"] == {"latent": [1, 16, 3, 4, 4]} and stage["median_ms"] > 0
    assert stage["gflop"] == pytest.approx((first + 2 * step) / 1e9) and step > first > 0
