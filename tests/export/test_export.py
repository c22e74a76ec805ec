"""Export stage: contracts, ONNX parity per graph and precision, manifest + sha256, atomic writes, TensorRT logic.

One bundle (fp32 + fp16 + int8) of the tiny random model is exported per module and shared; tests that need
a failing or different export use a text-encoder-only config, which exports in well under a second.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthetic_bundles import tampered_copy

from turbo_edge.export import BundleError, ContractError, ParityError, export_bundle, verify_bundle
from turbo_edge.export import bundle as bundle_mod
from turbo_edge.export.contracts import ExportShapes, build_components
from turbo_edge.spec.configs import ExportConfig

FAST = {"openvino_check": False, "int8_calibration_prompts": 2, "int8_calibration_steps": 4, "int8_subset_size": 16,
        "int8_bias_correction": False,  # it runs ORT once per biased layer: cheaper tests
        "int8_scope": "all"}  # not "auto": the same graphs on every CI host


@pytest.fixture(scope="module")
def model(tiny_t2v_dir: Path):
    from turbo_edge.core.pipeline_io import load_teacher

    return load_teacher(tiny_t2v_dir)


@pytest.fixture(scope="module")
def bundle(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return export_bundle(tiny_t2v_dir, out, ExportConfig(precisions=("fp32", "fp16", "int8"), **FAST))


def _text_only(**kw) -> ExportConfig:
    return ExportConfig(**{**FAST, "precisions": ("fp32",), "components": ("text_encoder",), "fp16_components": (), **kw})


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from turbo_edge.export.onnx_export import run_ort

    return next(iter(run_ort(path, feeds).values()))


# ------------------------------------------------------------------ manifest and parity


def test_manifest_carries_sampler_numbers_shapes_and_hashes(bundle: Path, model) -> None:
    from turbo_edge.spec import param

    m = verify_bundle(bundle)
    assert m["schema_version"] == 1
    assert m["source"]["kind"] == "teacher" and len(m["source"]["config_hash"]) == 16
    s = m["sampler"]
    assert s["kind"] == "ddim_cfg" and s["uses_cfg"] is True and s["w_embedding_dim"] is None
    assert s["guidance"] == 2.0  # the fixture's meta default_guidance
    assert s["prediction_type"] == "v_prediction" and s["num_train_timesteps"] == 1000
    np.testing.assert_array_equal(s["alphas_cumprod"], param.alphas_cumprod(model.scheduler_config))
    assert s["default_steps"] == 50 and s["supported_steps"] == [10, 25, 50]
    assert s["timesteps"]["10"] == param.ddim_timesteps(1000, 10).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert m["latent"] == {"channels": 4, "frames": 4, "height": 8, "width": 8, "scaling_factor": 1.0}
    assert m["video"] == {"frames": 4, "height": 16, "width": 16, "fps": 8}
    assert m["text"]["max_length"] == 16 and m["text"]["hidden_size"] == 32 and "red" in m["text"]["closed_vocabulary"]
    unet = m["components"]["unet"]
    assert unet["files"] == {"fp32": "unet.onnx", "fp16": "unet.fp16.onnx", "int8": "unet.int8.onnx"}
    # int8_format "auto" kept this few-MB UNet on Q/DQ ONNX, and the saved config names that choice
    assert unet["formats"] == {"fp32": "onnx", "fp16": "onnx", "int8": "onnx"} and m["parity"]["unet"]["int8"]["backend"] == "onnxruntime"
    assert json.loads((bundle / "export_config.json").read_text())["int8_format"] == "qdq"
    assert [i["name"] for i in unet["inputs"]] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet["inputs"][0]["shape"] == ["batch", 4, "frames", 8, 8]
    assert unet["profile"]["min"]["sample"] == [1, 4, 1, 8, 8] and unet["profile"]["max"]["sample"] == [4, 4, 4, 8, 8]
    assert m["components"]["vae_decoder"]["outputs"][0] == {"name": "image", "dtype": "float32", "shape": ["frames_total", 3, 16, 16]}
    expected = {"manifest.json", "parity.json", "export_config.json", "tokenizer/tokenizer.json",
                "tokenizer/tokenizer_config.json", "text_encoder.onnx", "unet.onnx", "unet.fp16.onnx", "unet.int8.onnx",
                "vae_decoder.onnx", "text_encoder.fp16.onnx", "vae_decoder.fp16.onnx"}
    assert {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} == expected
    assert set(m["files"]) == expected - {"manifest.json"} and all(len(h) == 64 for h in m["files"].values())


def test_parity_numbers_per_graph_and_precision(bundle: Path) -> None:
    parity = verify_bundle(bundle)["parity"]
    for component in ("text_encoder", "unet", "vae_decoder"):
        assert parity[component]["fp32"]["max_abs"] < 1e-4, component  # measured ~1e-6
        assert parity[component]["fp16"]["max_abs"] < 2e-2, component  # measured ~2e-3
        assert all(r["passed"] for r in parity[component].values())
    assert 1e-4 < parity["unet"]["int8"]["mean_rel"] < 0.15  # measured ~0.035: quantized, but close
    report = json.loads((bundle / "parity.json").read_text())
    assert report["onnxruntime"]["unet"]["fp32"]["polygraphy_passed"] is True
    assert set(report["onnxruntime"]["unet"]["fp32"]["points"]) == {"min", "opt", "max"}


def test_dynamic_batch_and_frames_match_pytorch(bundle: Path, model) -> None:
    from turbo_edge.export.onnx_export import run_torch

    comps = build_components(model, ExportShapes(4, 16, 16), ("unet", "text_encoder"))
    contract, module = comps["unet"]
    rng = np.random.default_rng(3)
    for batch, frames in ((1, 2), (3, 4), (4, 1)):
        feeds = {
            "sample": rng.standard_normal((batch, 4, frames, 8, 8)).astype(np.float32),
            "timestep": np.full(batch, 321.0, np.float32),
            "encoder_hidden_states": rng.standard_normal((batch, 16, 32)).astype(np.float32),
        }
        got = _ort(bundle / "unet.onnx", feeds)
        assert got.shape == (batch, 4, frames, 8, 8)
        assert np.abs(got - run_torch(module, contract, feeds)["out_sample"]).max() < 1e-4
    ids = np.random.default_rng(0).integers(0, 10, (3, 16))
    assert _ort(bundle / "text_encoder.onnx", {"input_ids": ids}).shape == (3, 16, 32)


def test_int8_graph_is_qdq_and_close_to_fp32(bundle: Path) -> None:
    from turbo_edge.export.quantize import count_ops

    assert count_ops(bundle / "unet.int8.onnx", "QuantizeLinear") >= 10
    assert count_ops(bundle / "unet.onnx", "QuantizeLinear") == 0
    assert count_ops(bundle / "unet.fp16.onnx", "Cast") > count_ops(bundle / "unet.onnx", "Cast")
    rng = np.random.default_rng(1)
    feeds = {"sample": rng.standard_normal((2, 4, 4, 8, 8)).astype(np.float32), "timestep": np.array([700.0, 700.0], np.float32),
             "encoder_hidden_states": rng.standard_normal((2, 16, 32)).astype(np.float32)}
    ref, q = _ort(bundle / "unet.onnx", feeds), _ort(bundle / "unet.int8.onnx", feeds)
    rel = np.abs(q - ref).mean() / np.abs(ref).mean()
    assert 1e-4 < rel < 0.25  # off-trajectory input: looser than the gate's 0.15 on the sampler's own latents


def _quantized_op_types(path: Path) -> set[str]:
    """Op types with at least one input coming from a DequantizeLinear (what int8 actually covers)."""
    import onnx

    graph = onnx.load(str(path)).graph
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.op_type for n in graph.node if n.op_type != "QuantizeLinear" and any(i in dq_outputs for i in n.input)}


@pytest.mark.slow  # ~2 min on 2 cores: a second NNCF export (run with -m slow)
def test_int8_conv_scope_keeps_matmuls_fp32(bundle: Path, tmp_path: Path) -> None:
    from turbo_edge.export.quantize import Int8Options, quantize_int8
    from turbo_edge.spec.configs import INT8_SCOPES

    assert {"Conv", "MatMul"} <= _quantized_op_types(bundle / "unet.int8.onnx")  # scope "all" (the bundle's default)
    rng = np.random.default_rng(2)
    feeds = [{"sample": rng.standard_normal((2, 4, 4, 8, 8)).astype(np.float32), "timestep": np.array([t, t], np.float32),
              "encoder_hidden_states": rng.standard_normal((2, 16, 32)).astype(np.float32)} for t in (900.0, 500.0, 100.0)]
    out = tmp_path / "unet.conv.onnx"
    quantize_int8(bundle / "unet.onnx", out, feeds, Int8Options(ignored_types=INT8_SCOPES["conv"], subset_size=3, bias_correction=False))
    covered = _quantized_op_types(out)
    assert "Conv" in covered and not covered & {"MatMul", "Gemm"}
    with pytest.raises(ValueError, match="int8_scope"):
        ExportConfig(int8_scope="attention")


def test_int8_scope_auto_follows_the_cpu_unless_set():
    from turbo_edge.spec.host import host_int8_scope

    assert host_int8_scope("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n") == "conv"  # no int8 dot products
    assert host_int8_scope("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n") == "all"
    assert host_int8_scope("processor\t: 0\nflags\t\t: fpu avx2 avx_vnni\n") == "all"
    assert host_int8_scope("Processor\t: AArch64\n") == "all"  # no x86 flags line: NNCF's preset
    assert ExportConfig().int8_scope in ("all", "conv")  # "auto" is resolved when made
    assert ExportConfig(int8_scope="all").int8_scope == "all"


def test_reexport_with_same_config_reuses(bundle: Path, tiny_t2v_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = (bundle / "manifest.json").read_bytes()
    with caplog.at_level(logging.INFO, logger="turbo_edge.export.bundle"):
        export_bundle(tiny_t2v_dir, bundle, ExportConfig(precisions=("fp32", "fp16", "int8"), **{**FAST, "threads": 2}))
    assert "reusing bundle" in caplog.text
    assert (bundle / "manifest.json").read_bytes() == before


# ------------------------------------------------------------------ bad input and failures


def test_changed_byte_names_the_file(bundle: Path, tmp_path: Path) -> None:
    copy = tampered_copy(bundle, tmp_path / "b", "vae_decoder.onnx", flip=0x01)
    with pytest.raises(BundleError, match=r"vae_decoder\.onnx in .* was changed after export"):
        verify_bundle(copy)
    (copy / "unet.int8.onnx").unlink()
    with pytest.raises(BundleError, match=r"unet\.int8\.onnx is missing"):
        verify_bundle(copy)
    with pytest.raises(BundleError, match="not a turbo-edge bundle"):
        verify_bundle(tmp_path)


def test_interrupted_export_leaves_previous_bundle(tiny_t2v_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bundle"
    export_bundle(tiny_t2v_dir, out, _text_only())
    good = (out / "manifest.json").read_bytes()

    def crash(*_a, **_k):
        raise RuntimeError("simulated crash after the graphs were written")

    monkeypatch.setattr(bundle_mod, "copy_tokenizer", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_bundle(tiny_t2v_dir, out, _text_only(opset=18, overwrite=True))  # a different config: not reusable
    assert (out / "manifest.json").read_bytes() == good
    assert verify_bundle(out)["components"]["text_encoder"]["files"] == {"fp32": "text_encoder.onnx"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp dir, no half bundle
    with pytest.raises(RuntimeError):
        export_bundle(tiny_t2v_dir, tmp_path / "fresh", _text_only(opset=18))
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="already holds a bundle; pass --overwrite"):
        export_bundle(tiny_t2v_dir, out, _text_only(opset=18))  # refused before the model loads
    assert (out / "manifest.json").read_bytes() == good


def test_bundle_carries_the_tokenizer_files_the_model_has(tiny_t2v_dir: Path, tmp_path: Path) -> None:
    from turbo_edge.core import world
    from turbo_edge.spec.tokenizer import ClipTokenizer
    from turbo_edge.spec.tokenizer_files import write_tokenizer

    model = shutil.copytree(tiny_t2v_dir, tmp_path / "m")
    shutil.rmtree(model / "tokenizer")
    write_tokenizer(model / "tokenizer", world.vocabulary(), 16)  # the transformers 4 layout: vocab.json + merges.txt
    bundle = export_bundle(model, tmp_path / "b", _text_only())
    tokenizer = {f for f in verify_bundle(bundle)["files"] if f.startswith("tokenizer/")}
    assert tokenizer == {"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json"}
    assert ClipTokenizer.from_dir(bundle / "tokenizer").encode("a red circle").ids == \
        ClipTokenizer.from_dir(tiny_t2v_dir / "tokenizer").encode("a red circle").ids  # same vocabulary, either file form
    (model / "tokenizer" / "tokenizer_config.json").unlink()
    with pytest.raises(BundleError, match="lacks tokenizer_config.json") as exc:
        bundle_mod.copy_tokenizer(model, tmp_path / "c")
    assert "\n" not in str(exc.value)


def test_parity_gate_blocks_the_bundle(tiny_t2v_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ParityError, match=r"text_encoder fp32 graph fails parity.*no bundle written"):
        export_bundle(tiny_t2v_dir, tmp_path / "b", _text_only(tolerance_fp32=1e-12))
    assert list(tmp_path.iterdir()) == []


def test_model_missing_a_component(tiny_t2v_dir: Path, tmp_path: Path) -> None:
    from turbo_edge.core.pipeline_io import ModelLayoutError

    broken = Path(shutil.copytree(tiny_t2v_dir, tmp_path / "broken"))
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelLayoutError, match=r"lacks component folder\(s\) \['vae'\]"):
        export_bundle(broken, tmp_path / "b", _text_only())
    assert not (tmp_path / "b").exists()


def test_shapes_outside_the_contract(model) -> None:
    contract, _ = build_components(model, ExportShapes(4, 16, 16), ("unet",))["unet"]
    feeds = contract.sample_inputs("max")
    contract.check_inputs(feeds)
    too_long = {**feeds, "sample": np.zeros((4, 4, 5, 8, 8), np.float32)}
    with pytest.raises(ContractError, match=r"axis 'frames' \(dim 2\) is 5, outside the contract's range \[1, 4\]"):
        contract.check_inputs(too_long)
    with pytest.raises(ContractError, match=r"dim 3 is 16, the contract fixes it at 8"):
        contract.check_inputs({**feeds, "sample": np.zeros((4, 4, 4, 16, 8), np.float32)})
    with pytest.raises(ContractError, match="dtype float64"):
        contract.check_inputs({**feeds, "timestep": feeds["timestep"].astype(np.float64)})
    with pytest.raises(ContractError, match="'batch' is 3 here but 4"):
        contract.check_inputs({**feeds, "timestep": np.zeros(3, np.float32)})
    with pytest.raises(ContractError, match="multiples of the VAE's factor 2"):
        build_components(model, ExportShapes(4, 15, 15), ("unet",))


def test_static_and_dynamic_spatial_contracts(model) -> None:
    static, _ = build_components(model, ExportShapes(4, 16, 16, static=True), ("unet",))["unet"]
    assert static.profile()["min"] == static.profile()["max"] == static.profile()["opt"]
    assert static.profile()["opt"]["sample"] == [2, 4, 4, 8, 8]
    assert static.dynamic_axes()["sample"] == {} and static.to_manifest()["inputs"][0]["shape"] == [2, 4, 4, 8, 8]
    spatial, _ = build_components(model, ExportShapes(4, 16, 16, dynamic_spatial=True), ("vae_decoder",))["vae_decoder"]
    assert spatial.dynamic_axes()["latent"] == {0: "frames_total", 2: "latent_height", 3: "latent_width"}
    assert spatial.dynamic_axes()["image"] == {0: "frames_total", 2: "height", 3: "width"}
    assert spatial.axes["height"] == (8, 16, 32)


def test_config_validates_and_hash_ignores_run_only_fields() -> None:
    cfg = ExportConfig(precisions=("fp32", "int8"), frames=8)
    assert ExportConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.content_hash() == cfg.replace(threads=2, out="elsewhere").content_hash()
    assert cfg.content_hash() != cfg.replace(frames=4).content_hash()
    with pytest.raises(ValueError, match="must include fp32"):
        ExportConfig(precisions=("int8",))
    with pytest.raises(ValueError, match="static and dynamic_spatial"):
        ExportConfig(static=True, dynamic_spatial=True)


def test_external_data_with_lowered_threshold(tiny_t2v_dir: Path, tmp_path: Path) -> None:
    out = export_bundle(tiny_t2v_dir, tmp_path / "b", _text_only(external_data_threshold=1024, fp16_components=("text_encoder",), precisions=("fp32", "fp16")))
    m = verify_bundle(out)
    assert {"text_encoder.onnx.data", "text_encoder.fp16.onnx.data"} <= set(m["files"])
    assert (out / "text_encoder.onnx").stat().st_size < (out / "text_encoder.onnx.data").stat().st_size
    assert m["parity"]["text_encoder"]["fp32"]["max_abs"] < 1e-4
    assert _ort(out / "text_encoder.onnx", {"input_ids": np.zeros((1, 16), np.int64)}).shape == (1, 16, 32)


def test_a_graph_scattered_over_weight_files_is_merged_file_to_file(tmp_path: Path) -> None:
    """What the TorchScript exporter writes for a graph over 2 GB (one file per weight beside it) becomes one graph and
    one ``.data`` file by copying bytes, never loading the weights: the same function, every initializer external."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from turbo_edge.export.onnx_export import merge_external_data, run_ort

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((16, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # what the exporter writes at opset 17
    onnx.save_model(model, str(scratch / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    assert len(list(scratch.iterdir())) == 3  # the graph and one file per weight
    x = rng.standard_normal((2, 8)).astype(np.float32)
    out = tmp_path / "unet.onnx"
    files = merge_external_data(onnx.load(str(scratch / "model.onnx"), load_external_data=False), scratch, out)
    assert files == [out, tmp_path / "unet.onnx.data"] and files[1].stat().st_size == w1.nbytes + w2.nbytes
    import shutil

    shutil.rmtree(scratch)  # the merged graph reads nothing from the scratch folder
    np.testing.assert_allclose(run_ort(out, {"x": x})["y"], np.maximum(x @ w1, 0) @ w2, rtol=1e-5)
    merged = onnx.load(str(out), load_external_data=False)
    assert [{e.key: e.value for e in t.external_data}["location"] for t in merged.graph.initializer] == ["unet.onnx.data"] * 2


def test_openvino_runs_the_int8_graph(bundle: Path) -> None:
    from turbo_edge.export.parity import openvino_runner

    rng = np.random.default_rng(2)
    feeds = {"sample": rng.standard_normal((2, 4, 4, 8, 8)).astype(np.float32), "timestep": np.array([400.0, 400.0], np.float32),
             "encoder_hidden_states": rng.standard_normal((2, 16, 32)).astype(np.float32)}
    ref = _ort(bundle / "unet.onnx", feeds)
    got = openvino_runner(bundle / "unet.int8.onnx", threads=1)(feeds)["out_sample"]
    assert np.abs(got - ref).mean() / np.abs(ref).mean() < 0.25


def test_int8_overflow_fix_follows_the_cpu_unless_set():
    from turbo_edge.spec.host import host_overflow_fix

    avx2_only = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
    vnni = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n"
    assert host_overflow_fix(avx2_only) == "enable"  # u8 x s8 products saturate 16-bit intermediates here
    assert host_overflow_fix(vnni) == "first_layer"
    assert host_overflow_fix("Processor\t: AArch64\n") == "first_layer"  # no x86 flags line
    assert ExportConfig().int8_overflow_fix in ("enable", "first_layer")  # "auto" is resolved when made


def test_cpu_flags_and_clock_from_cpuinfo_text():
    from turbo_edge.spec.host import cpu_flags, cpu_mhz

    text = "processor\t: 0\ncpu MHz\t\t: 2445.412\nflags\t\t: fpu avx2 avx512f\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert cpu_flags(text) == frozenset({"fpu", "avx2", "avx512f"})  # the first processor's line
    assert cpu_mhz(text) == 2445.412
    assert cpu_flags("") is None and cpu_mhz("") is None
    assert ExportConfig(int8_overflow_fix="disable").int8_overflow_fix == "disable"
    with pytest.raises(ValueError, match="int8_overflow_fix"):
        ExportConfig(int8_overflow_fix="always")
