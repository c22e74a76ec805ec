"""TensorRT engine logic (profiles, names, builder config, manifest update) with a fake ``tensorrt`` module.

TensorRT cannot be installed on the CPU development machines, so nothing here imports it; the one test that
builds a real engine is marked ``gpu`` and skips without TensorRT.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from turbo_edge.export.tensorrt_build import (
    EngineConfig,
    GpuInfo,
    TensorRTUnavailable,
    build_engines,
    configure,
    engine_name,
    load_tensorrt,
    timing_cache_name,
)
from turbo_edge.spec import bundle as mf
from turbo_edge.spec.sampler import SamplerSpec

PROFILE = {
    "min": {"sample": [1, 4, 1, 8, 8], "timestep": [1]},
    "opt": {"sample": [2, 4, 8, 8, 8], "timestep": [2]},
    "max": {"sample": [4, 4, 16, 8, 8], "timestep": [4]},
}
GPU = GpuInfo("NVIDIA GeForce RTX 4090", (8, 9))


class FakeTRT(types.SimpleNamespace):
    """Records what the build code asks of TensorRT; serialises a network as the ONNX bytes it parsed."""

    def __init__(self) -> None:
        calls: list[tuple] = []
        super().__init__(__version__="10.8.0.43", calls=calls)
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                calls.append(("logger", level))

        class Profile:
            def set_shape(self, name, lo, opt, hi) -> None:
                calls.append(("set_shape", name, lo, opt, hi))

        class Cache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+timed"

        class Config:
            builder_optimization_level = None

            def set_memory_pool_limit(self, pool, size) -> None:
                calls.append(("workspace", pool, size))

            def add_optimization_profile(self, profile) -> None:
                calls.append(("add_profile",))

            def create_timing_cache(self, data: bytes) -> Cache:
                calls.append(("timing_cache_in", data))
                return Cache(data)

            def set_timing_cache(self, cache, ignore_mismatch) -> None:
                calls.append(("set_timing_cache", ignore_mismatch))

            def set_flag(self, flag) -> None:  # strongly typed networks must not need precision flags
                raise AssertionError(f"set_flag({flag}) called on a strongly typed build")

        class Network:
            source = b""

        class Builder:
            def __init__(self, logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                calls.append(("network_flags", flags))
                return Network()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def create_builder_config(self) -> Config:
                return Config()

            def build_serialized_network(self, network, config) -> bytes:
                calls.append(("build", config.builder_optimization_level))
                return b"PLAN:" + network.source

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger) -> None:
                self.network = network

            def parse_from_file(self, path: str) -> bool:
                self.network.source = Path(path).read_bytes()
                return True

        fake.Logger, fake.Builder, fake.OnnxParser = Logger, Builder, OnnxParser
        fake.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1, EXPLICIT_BATCH=0)


def _fake_bundle(root: Path) -> Path:
    root.mkdir()
    (root / "unet.onnx").write_bytes(b"fp32-graph")
    (root / "unet.fp16.onnx").write_bytes(b"fp16-graph")
    (root / "text_encoder.onnx").write_bytes(b"te-graph")
    (root / "vae_decoder.onnx").write_bytes(b"vae-graph")
    io = {"inputs": [], "outputs": [], "profile": PROFILE}
    sampler = SamplerSpec.ddim_cfg({"num_train_timesteps": 1000}).to_dict()
    mf.write_manifest(root, mf.new_manifest(
        "0.0.0", source={"model": "fake", "kind": "teacher", "config_hash": "0" * 16}, sampler=sampler, latent={}, video={}, text={},
        components={"unet": {"files": {"fp32": "unet.onnx", "fp16": "unet.fp16.onnx"}, **io},
                    "text_encoder": {"files": {"fp32": "text_encoder.onnx"}, "inputs": [], "outputs": []},
                    "vae_decoder": {"files": {"fp32": "vae_decoder.onnx"}, "inputs": [], "outputs": []}}, parity={},
    ))
    return root


def test_engine_name_encodes_version_gpu_precision_and_shapes() -> None:
    name = engine_name("unet", "fp16", "10.8.0.43", GPU, PROFILE)
    assert name.startswith("unet.fp16.trt10.8.0.43.sm89.nvidia-geforce-rtx-4090.") and name.endswith(".plan")
    other_shapes = {**PROFILE, "max": {"sample": [8, 4, 16, 8, 8], "timestep": [8]}}
    assert engine_name("unet", "fp16", "10.8.0.43", GPU, other_shapes) != name
    assert engine_name("unet", "int8", "10.8.0.43", GPU, PROFILE) != name
    assert engine_name("unet", "fp16", "10.8.0.43", GpuInfo("NVIDIA H100", (9, 0)), PROFILE) != name
    assert timing_cache_name("10.8.0.43", GPU) == "timing.trt10.8.0.43.sm89.nvidia-geforce-rtx-4090.cache"


def test_builder_config_has_profile_cache_and_no_precision_flags() -> None:
    trt = FakeTRT()
    builder = trt.Builder(None)
    config, cache = configure(trt, builder, EngineConfig(workspace_gb=2.0, optimization_level=4), PROFILE, b"old")
    assert config.builder_optimization_level == 4
    assert ("workspace", "workspace", 2 * (1 << 30)) in trt.calls
    assert ("set_shape", "sample", (1, 4, 1, 8, 8), (2, 4, 8, 8, 8), (4, 4, 16, 8, 8)) in trt.calls
    assert ("set_shape", "timestep", (1,), (2,), (4,)) in trt.calls
    assert ("timing_cache_in", b"old") in trt.calls and cache.serialize() == b"old+timed"


def test_build_engines_with_fake_trt_updates_manifest(tmp_path: Path) -> None:
    root = _fake_bundle(tmp_path / "bundle")
    trt = FakeTRT()
    cfg = EngineConfig(bundle=str(root), precisions=("fp16", "int8"), components=("unet",))
    planned = build_engines(root, cfg, trt=trt, gpu=GPU, dry_run=True)
    assert [p.name.split(".")[1] for p in planned] == ["fp16"]  # no int8 graph in this bundle: skipped
    assert not (root / "engines").exists()
    (plan,) = build_engines(root, cfg, trt=trt, gpu=GPU)
    assert plan.read_bytes() == b"PLAN:fp16-graph"
    assert ("network_flags", 1 << 1) in trt.calls and ("build", 3) in trt.calls
    m = mf.verify_bundle(root)  # engines and the timing cache are hashed into the manifest
    assert m["engines"]["unet"]["fp16"]["file"] == f"engines/{plan.name}"
    assert m["engines"]["unet"]["fp16"]["compute_capability"] == [8, 9]
    cache = root / "engines" / timing_cache_name(trt.__version__, GPU)
    assert cache.read_bytes() == b"+timed" and f"engines/{cache.name}" in m["files"]
    builds = sum(1 for c in trt.calls if c[0] == "build")
    build_engines(root, cfg, trt=trt, gpu=GPU)  # same name = same inputs: reused, not rebuilt
    assert sum(1 for c in trt.calls if c[0] == "build") == builds


def test_default_build_covers_every_graph_the_bundle_has_its_tiny_decoder_included(tmp_path: Path) -> None:
    root = _fake_bundle(tmp_path / "bundle")
    (root / "vae_decoder_tiny.onnx").write_bytes(b"tiny-graph")
    (root / "vae_decoder_tiny.fp16.onnx").write_bytes(b"tiny-fp16-graph")
    m = json.loads((root / mf.MANIFEST).read_text())
    m["components"]["vae_decoder_tiny"] = {"files": {"fp32": "vae_decoder_tiny.onnx", "fp16": "vae_decoder_tiny.fp16.onnx"}, "inputs": [], "outputs": []}
    for entry in m["components"].values():  # as export writes them: every graph has its shape profile
        entry.setdefault("profile", PROFILE)
    m["decoders"] = {"default": "full", "variants": {"full": {"component": "vae_decoder", "layout": "frames"},
                                                      "tiny": {"component": "vae_decoder_tiny", "layout": "frames"}}}
    m.pop("files")
    mf.write_manifest(root, m)
    trt = FakeTRT()
    plans = build_engines(root, EngineConfig(bundle=str(root)), trt=trt, gpu=GPU)
    # fp16 (the default): the UNet's and the tiny decoder's fp16 graphs; the text encoder and full decoder have fp32 only
    assert sorted(".".join(p.name.split(".")[:2]) for p in plans) == [
        "text_encoder.fp32", "unet.fp16", "vae_decoder.fp32", "vae_decoder_tiny.fp16"]
    bundle = mf.load_bundle(root, runnable=False)
    assert bundle.engine_path("vae_decoder_tiny", "fp16").read_bytes() == b"PLAN:tiny-fp16-graph"  # what --decoder tiny runs
    assert bundle.engine_path("vae_decoder", "fp16").read_bytes() == b"PLAN:vae-graph"  # the fp32 graph's engine, run at fp16
    only = build_engines(root, EngineConfig(bundle=str(root), components=("unet",)), trt=trt, gpu=GPU, dry_run=True)
    assert [p.name.split(".")[0] for p in only] == ["unet"]


def test_clear_error_without_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(TensorRTUnavailable, match="pip install"):
        load_tensorrt()
    root = _fake_bundle(tmp_path / "bundle")
    with pytest.raises(TensorRTUnavailable, match="NVIDIA GPU"):
        build_engines(root)
    with pytest.raises(ValueError, match="unknown precision"):
        EngineConfig(precisions=("fp8",))


@pytest.mark.gpu
def test_real_engine_build(tiny_t2v_dir: Path, tmp_path: Path) -> None:
    """Where TensorRT imports (a GPU machine): export the tiny teacher, build its engines with the real builder, run the
    bundle on them, and compare with ONNX Runtime on the CPU. Never run on the CPU development machines."""
    pytest.importorskip("tensorrt", reason="TensorRT is installable only from NVIDIA's index, on GPU machines")
    import numpy as np

    from turbo_edge import export
    from turbo_edge.runtime import Pipeline
    from turbo_edge.spec.configs import ExportConfig

    out = tmp_path / "bundle"
    export.export_bundle(tiny_t2v_dir, out, ExportConfig(model=str(tiny_t2v_dir), out=str(out), precisions=("fp32",),
                                                         supported_steps=(2,), default_steps=2, openvino_check=False, threads=1))
    engines = build_engines(out, EngineConfig(bundle=str(out)))
    assert engines and all(p.is_file() and p.stat().st_size > 0 for p in engines)
    assert mf.read_manifest(out)["engines"], "the manifest records the engines it was given"
    clips = {}
    for backend in ("tensorrt", "ort-cpu"):
        pipe = Pipeline.from_bundle(out, backend=backend, precision="fp32", threads=1)
        try:
            clips[backend] = pipe.generate("a red circle moving left", steps=2, seed=0).astype(np.int16)
        finally:
            pipe.close()
    assert clips["tensorrt"].shape == clips["ort-cpu"].shape
    assert np.abs(clips["tensorrt"] - clips["ort-cpu"]).mean() < 2.0  # TF32 / kernel choice, not a different model


# ------------------------------------------------------------------ a DiT bundle's graphs (tests/dit_bundles.py's hand-built bundle)


class OnnxLoadingTRT(FakeTRT):
    """A fake whose parser loads the graph from its path with ``onnx.load``, which resolves external data relative to
    the file as TensorRT's ``parse_from_file`` does; records each parsed graph's initializer bytes."""

    def __init__(self) -> None:
        super().__init__()
        parsed = self.parsed = {}

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger) -> None:
                self.network = network

            def parse_from_file(self, path: str) -> bool:
                import onnx

                model = onnx.load(path)  # raises if the side file is not beside the graph
                parsed[Path(path).name] = sum(len(t.raw_data) for t in model.graph.initializer)
                self.network.source = Path(path).read_bytes()
                return True

        self.OnnxParser = OnnxParser


def _dit_bundle(root: Path, external_unet: bool = False) -> Path:
    """The hand-built DiT bundle with an fp16 transformer graph beside its fp32 one, as a DiT export leaves it (UMT5 and
    the causal decoder fp32 only, ``export.dit.FP16_COMPONENTS``); ``external_unet``: the transformer's weights in
    ``unet.onnx.data``, as a > 2 GiB graph has them."""
    import json
    import shutil as sh

    import onnx
    from dit_bundles import make_dit_bundle, teacher_contract

    make_dit_bundle(root, teacher_contract())
    manifest = json.loads((root / "manifest.json").read_text())
    if external_unet:
        model = onnx.load(str(root / "unet.onnx"))
        onnx.save_model(model, str(root / "unet.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="unet.onnx.data",
                        size_threshold=0)
    sh.copy2(root / "unet.onnx", root / "unet.fp16.onnx")  # the fake builder only reads the file; its precision is the manifest's
    if external_unet:
        model = onnx.load(str(root / "unet.fp16.onnx"))
        onnx.save_model(model, str(root / "unet.fp16.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="unet.fp16.onnx.data", size_threshold=0)
    manifest["components"]["unet"]["files"]["fp16"] = "unet.fp16.onnx"
    mf.write_manifest(root, manifest)
    return root


def test_default_engine_build_covers_every_component_the_runtime_runs_of_a_dit_bundle(tmp_path: Path) -> None:
    """`turbo-edge engine` (fp16) on a DiT bundle: the transformer's fp16 graph, and UMT5's and the causal decoder's fp32
    graphs (they have no fp16 one), so the tensorrt runtime at fp16 finds an engine for every component."""
    root = _dit_bundle(tmp_path / "dit")
    trt = FakeTRT()
    plans = build_engines(root, EngineConfig(bundle=str(root)), trt=trt, gpu=GPU)
    assert sorted(".".join(p.name.split(".")[:2]) for p in plans) == ["text_encoder.fp32", "unet.fp16", "vae_decoder.fp32"]
    bundle = mf.load_bundle(root, runnable=False)
    for component in ("text_encoder", "unet", "vae_decoder"):
        assert bundle.engine_path(component, "fp16").is_file(), component
    assert set(bundle.manifest["engines"]["vae_decoder"]) == {"fp32"}
    # fp16 and fp32 asked together: the fp32 graphs of UMT5 and the decoder are built once
    plans = build_engines(root, EngineConfig(bundle=str(root), precisions=("fp16", "fp32")), trt=trt, gpu=GPU, dry_run=True)
    assert sorted(".".join(p.name.split(".")[:2]) for p in plans) == ["text_encoder.fp32", "unet.fp16", "unet.fp32", "vae_decoder.fp32"]


def test_int8_engines_of_a_bundle_without_an_int8_transformer_build_nothing_for_it(tmp_path: Path) -> None:
    root = _dit_bundle(tmp_path / "dit")
    plans = build_engines(root, EngineConfig(bundle=str(root), precisions=("int8",)), trt=FakeTRT(), gpu=GPU, dry_run=True)
    assert sorted(".".join(p.name.split(".")[:2]) for p in plans) == ["text_encoder.fp32", "vae_decoder.fp32"]  # the UNet never falls back


def test_dit_profiles_come_from_the_manifest_axes_mask_included(tmp_path: Path) -> None:
    from dit_bundles import LENGTH, LF, LH, LW, C

    root = _dit_bundle(tmp_path / "dit")
    trt = FakeTRT()
    build_engines(root, EngineConfig(bundle=str(root)), trt=trt, gpu=GPU)
    shapes = [c[1:] for c in trt.calls if c[0] == "set_shape"]
    assert ("input_ids", (1, LENGTH), (2, LENGTH), (4, LENGTH)) in shapes
    assert ("attention_mask", (1, LENGTH), (2, LENGTH), (4, LENGTH)) in shapes  # UMT5's mask: its own profile entry
    assert ("sample", (1, C, LF, LH, LW), (2, C, LF, LH, LW), (4, C, LF, LH, LW)) in shapes
    assert ("latent", (1, C, LF, LH, LW), (1, C, LF, LH, LW), (2, C, LF, LH, LW)) in shapes  # the whole clip, static frames
    assert sum(1 for c in trt.calls if c[0] == "add_profile") == 3  # one profile per engine
    assert all(flags == 1 << 1 for name, flags in (c for c in trt.calls if c[0] == "network_flags"))  # strongly typed, each


def test_a_dit_graph_with_external_data_is_parsed_from_its_path(tmp_path: Path) -> None:
    root = _dit_bundle(tmp_path / "dit", external_unet=True)
    assert (root / "unet.fp16.onnx.data").is_file() and "unet.fp16.onnx.data" in mf.read_manifest(root)["files"]
    trt = OnnxLoadingTRT()
    [plan] = build_engines(root, EngineConfig(bundle=str(root), components=("unet",)), trt=trt, gpu=GPU)
    assert trt.parsed["unet.fp16.onnx"] > 0  # the weights came from the side file
    assert plan.name.startswith("unet.fp16.") and mf.verify_bundle(root)["engines"]["unet"]["fp16"]["file"] == f"engines/{plan.name}"
    moved = tmp_path / "elsewhere.onnx"  # the graph alone, away from its data: the parser cannot load it
    moved.write_bytes((root / "unet.fp16.onnx").read_bytes())
    with pytest.raises(Exception, match="unet.fp16.onnx.data|No such file|not exist"):
        trt.OnnxParser(None, None).parse_from_file(str(moved))
