"""Decoder variants in a bundle (``export --decoder full,tiny``): the manifest's ``decoders`` section, the Python
runtime's choice, the one-line refusal of a decoder a bundle lacks, and the C++ host and C API choosing the same
decoder with the same frames. Torch-free: synthetic bundles (tests/runtime/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cpp_host import run_host
from synthetic_bundles import SYN, make_synthetic_bundle

from turbo_edge.cli import main
from turbo_edge.runtime import Pipeline
from turbo_edge.spec.bundle import load_bundle, verify_bundle
from turbo_edge.spec.errors import BundleError

PROMPT = "a red circle moving left"


def test_bundle_lists_its_decoders_and_their_default(synthetic_tiny_bundle, synthetic_student_bundle, tmp_path):
    assert load_bundle(synthetic_tiny_bundle).decoders == (["full", "tiny"], "full")
    assert load_bundle(synthetic_tiny_bundle).decoder("tiny") == ("tiny", "vae_decoder_tiny", "clip")
    assert load_bundle(synthetic_student_bundle).decoders == (["full"], "full")  # no section: the full decoder only
    only_tiny = make_synthetic_bundle(tmp_path / "only_tiny", "consistency", decoders=("tiny",))
    bundle = load_bundle(only_tiny)  # runnable without vae_decoder: its default decoder is there
    assert bundle.decoders == (["tiny"], "tiny") and "vae_decoder" not in bundle.manifest["components"]


def test_python_runtime_decodes_with_the_chosen_decoder(synthetic_tiny_bundle, synthetic_student_bundle):
    full = Pipeline.from_bundle(synthetic_tiny_bundle).generate(PROMPT, seed=3)
    assert np.array_equal(full, Pipeline.from_bundle(synthetic_student_bundle).generate(PROMPT, seed=3))  # the default is the full one
    pipe = Pipeline.from_bundle(synthetic_tiny_bundle, decoder="tiny")
    assert (pipe.decoder_name, pipe.decoder_component, pipe.decoder_layout) == ("tiny", "vae_decoder_tiny", "clip")
    tiny = pipe.generate(PROMPT, seed=3)
    assert tiny.shape == full.shape == (SYN["frames"], SYN["lh"] * SYN["factor"], SYN["lw"] * SYN["factor"], 3)
    assert np.abs(tiny.astype(int) - full.astype(int)).mean() > 5  # another graph made these frames
    # The variant sees the whole clip (its graph mixes each frame with the clip's mean): batches of clips give each
    # clip what it gives alone.
    batch = pipe.run([PROMPT, "a blue square moving up"], seed=3).frames
    assert np.array_equal(batch[0], tiny)


def test_a_bundle_without_the_decoder_refuses_it_in_one_line(synthetic_student_bundle, synthetic_tiny_bundle):
    with pytest.raises(BundleError) as err:
        Pipeline.from_bundle(synthetic_student_bundle, decoder="tiny")
    message = str(err.value)
    assert "\n" not in message and "no 'tiny' decoder" in message and "['full']" in message and "--decoder full,tiny" in message
    with pytest.raises(BundleError, match=r"no 'pruned' decoder; it has \['full', 'tiny'\]"):
        Pipeline.from_bundle(synthetic_tiny_bundle, decoder="pruned")
    with pytest.raises(ValueError, match="a decoder is named like full, tiny or pruned"):
        Pipeline.from_bundle(synthetic_tiny_bundle, decoder="../x")


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(default="pruned"), "decoders.default 'pruned' is not one of its variants"),
    (lambda d: d["variants"]["tiny"].update(component="unet"), "variant 'tiny' must name component 'vae_decoder_tiny'"),
    (lambda d: d["variants"]["tiny"].update(layout="frames_of_doom"), "a layout in ['frames', 'clip', 'video', 'steps']"),
    (lambda d: d.update(variants={}), "non-empty variants object"),
    (lambda d: d["variants"].update({"Tiny!": {"component": "vae_decoder_Tiny!", "layout": "clip"}}), "must be a lower-case name"),
])
def test_a_malformed_decoders_section_is_refused_naming_it(synthetic_tiny_bundle, tmp_path, edit, needle):
    bundle = tmp_path / "b"
    shutil.copytree(synthetic_tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest["decoders"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle)
    assert needle in str(err.value) and "re-export the bundle" in str(err.value)


def test_a_variant_graph_is_hashed_like_every_graph(synthetic_tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(synthetic_tiny_bundle, bundle)
    with (bundle / "vae_decoder_tiny.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="vae_decoder_tiny.onnx .* was changed after export"):
        Pipeline.from_bundle(bundle, decoder="tiny")


def test_verify_lists_the_decoders(synthetic_tiny_bundle, synthetic_student_bundle, capsys):
    assert main(["verify", str(synthetic_tiny_bundle)]) in (0, None)
    assert capsys.readouterr().out.splitlines()[-1] == "decoders: full (fp32), tiny (fp32); default full (choose with --decoder)"
    assert main(["verify", str(synthetic_student_bundle)]) in (0, None)
    assert "decoders" not in capsys.readouterr().out


def test_generate_cli_takes_the_decoder(synthetic_tiny_bundle, synthetic_student_bundle, tmp_path, capsys):
    assert main(["generate", PROMPT, "--bundle", str(synthetic_tiny_bundle), "--decoder", "tiny", "--out", str(tmp_path / "c.gif")]) == 0
    assert (tmp_path / "c.gif").stat().st_size > 0
    assert main(["generate", PROMPT, "--bundle", str(synthetic_student_bundle), "--decoder", "tiny", "--out", str(tmp_path / "d.gif")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'tiny' decoder; it has ['full']" in err[0] and not (tmp_path / "d.gif").exists()
    assert main(["generate", PROMPT, "--decoder", "tiny", "--out", str(tmp_path / "e.gif")]) != 0
    assert "--decoder chooses among a bundle's decoders" in capsys.readouterr().err


# ------------------------------------------------------------------ the C++ host


def _host_frames(host: Path, bundle: Path, out: Path, *extra: str) -> np.ndarray:
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--seed", "3", "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decoder"] == (extra[extra.index("--decoder") + 1] if "--decoder" in extra else "full")
    return np.fromfile(out / "frames.rgb", dtype=np.uint8)


def test_cpp_host_decodes_with_the_tiny_decoder_as_python_does(host, synthetic_tiny_bundle, tmp_path):
    py = Pipeline.from_bundle(synthetic_tiny_bundle, backend="openvino", decoder="tiny").generate(PROMPT, seed=3)
    cpp = _host_frames(host, synthetic_tiny_bundle, tmp_path / "tiny", "--decoder", "tiny").reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1
    full = _host_frames(host, synthetic_tiny_bundle, tmp_path / "full").reshape(py.shape)
    assert np.abs(full.astype(int) - cpp.astype(int)).mean() > 5


def test_cpp_host_refuses_a_decoder_the_bundle_lacks_as_python_does(host, synthetic_student_bundle, tmp_path):
    proc = run_host(host, "--bundle", str(synthetic_student_bundle), "--prompt", PROMPT, "--decoder", "tiny", "--out", str(tmp_path / "o"))
    with pytest.raises(BundleError) as err:
        Pipeline.from_bundle(synthetic_student_bundle, backend="openvino", decoder="tiny")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}"


# ------------------------------------------------------------------ exported: a model directory with tiny and pruned decoders


@pytest.fixture(scope="module")
def variant_model(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random teacher with a (random) tiny decoder and a pruned decoder (one up-block resnet removed) beside its
    VAE, named in its card as `turbo-edge decoder train` names them."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    import dataclasses

    import torch
    from diffusers import AutoencoderKL

    from turbo_edge.core.pruned_decoder import PrunedDecoder, removable_units
    from turbo_edge.core.tiny_decoder import TinyDecoder
    from turbo_edge.spec.card import DecoderVariant, Lineage, read_card, write_card

    out = tmp_path_factory.mktemp("models") / "with_decoders"
    shutil.copytree(tiny_t2v_dir, out)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    torch.manual_seed(0)
    TinyDecoder.for_autoencoder_kl(dict(vae.config), width=16).save_pretrained(out / "tiny_vae", safe_serialization=True)
    PrunedDecoder.from_vae(vae, removed=removable_units(vae.decoder)[:1]).save_pretrained(out / "pruned_vae", safe_serialization=True)
    lineage = Lineage(stage="decoder_train", parent=str(tiny_t2v_dir))
    card = read_card(out)
    variants = {"tiny": DecoderVariant("tiny_vae", "TinyDecoder", lineage, {"psnr_db": 20.0}),
                "pruned": DecoderVariant("pruned_vae", "PrunedDecoder", lineage)}
    write_card(dataclasses.replace(card, decoders=variants), out)
    return out


@pytest.fixture(scope="module")
def exported_tiny_bundle(variant_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``variant_model`` exported (fp32: NNCF on the UNet alone takes minutes here; a variant's int8 is tested below) with
    --decoder tiny,full,pruned (the tiny one the default), as a user runs it."""
    out = tmp_path_factory.mktemp("bundles") / "tiny_default"
    sets = [a for kv in ("openvino_check=false", "default_steps=2", "supported_steps=[2]") for a in ("--set", kv)]
    assert main(["export", "--model", str(variant_model), "--out", str(out), "--precision", "fp32", "--decoder", "tiny,full,pruned", *sets]) == 0
    return out


@pytest.mark.slow  # the fixture's export: ~40 s on 2 shared cores
def test_export_writes_each_decoder_as_a_hashed_variant(exported_tiny_bundle):
    manifest = verify_bundle(exported_tiny_bundle)
    section = manifest["decoders"]
    assert section["default"] == "tiny" and sorted(section["variants"]) == ["full", "pruned", "tiny"]
    assert section["variants"]["tiny"] == {"component": "vae_decoder_tiny", "layout": "clip", "class": "TinyDecoder", "quality": {"psnr_db": 20.0}}
    for name in ("vae_decoder_tiny", "vae_decoder_pruned"):
        entry = manifest["components"][name]
        assert entry["files"]["fp32"] == f"{name}.onnx" and entry["files"]["fp32"] in manifest["files"]
        assert entry["inputs"][0]["shape"][:3] == ["batch", 4, "frames"] and entry["outputs"][0]["shape"][:3] == ["batch", "frames", 3]
        assert manifest["parity"][name]["fp32"]["passed"] and manifest["parity"][name]["fp32"]["max_abs"] <= 1e-3
    assert load_bundle(exported_tiny_bundle).decoders == (["tiny", "full", "pruned"], "tiny")


@pytest.mark.slow  # the fixture's export: ~40 s on 2 shared cores
@pytest.mark.parametrize("name", ["tiny", "pruned"])
def test_exported_variant_decodes_as_pytorch(variant_model, exported_tiny_bundle, name):
    import torch

    from turbo_edge.core.tiny_decoder import load_decoder_variant

    latents = np.random.default_rng(1).standard_normal((2, 4, SYN["frames"], 8, 8)).astype(np.float32)
    module = load_decoder_variant(variant_model, name)
    with torch.no_grad():
        ref = np.rint((module(torch.from_numpy(latents)).clamp(-1, 1).numpy() + 1) * 127.5).astype(int).transpose(0, 1, 3, 4, 2)
    pipe = Pipeline.from_bundle(exported_tiny_bundle, decoder=name)
    frames = pipe.decode(latents)
    assert frames.shape == ref.shape and np.abs(frames.astype(int) - ref).max() <= 1


@pytest.mark.slow  # the fixture's export: ~40 s on 2 shared cores
def test_cpp_host_equals_python_with_the_exported_tiny_decoder(host, exported_tiny_bundle, tmp_path):
    py = Pipeline.from_bundle(exported_tiny_bundle, backend="openvino").generate(PROMPT, seed=3)  # the default: tiny
    cpp = _host_frames(host, exported_tiny_bundle, tmp_path / "o", "--decoder", "tiny").reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1


@pytest.mark.parametrize("tolerance", [None, 1e-9])
def test_variant_int8_ships_only_where_its_gate_holds(variant_model, tmp_path, tolerance):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.export.bundle import decoder_variants, export_int8_decoder
    from turbo_edge.export.contracts import ExportShapes
    from turbo_edge.export.onnx_export import export_onnx
    from turbo_edge.spec.configs import ExportConfig

    cfg = ExportConfig(model=str(variant_model), decoders=("tiny",), precisions=("fp32", "int8"), int8_subset_size=8, tolerance_int8=tolerance)
    name, (contract, module) = next(iter(decoder_variants(load_teacher(variant_model), variant_model, ExportShapes(SYN["frames"], 16, 16), cfg).items()))
    export_onnx(module, contract, tmp_path / f"{name}.onnx")
    rng = np.random.default_rng(0)
    feeds = [{"latent": rng.standard_normal((1, 4, SYN["frames"], 8, 8)).astype(np.float32)} for _ in range(4)]
    file, result, probe, backend = export_int8_decoder(name, contract, module, tmp_path, cfg, feeds)
    assert result.metric == "mean_rel" and len(probe) == 4
    if tolerance is not None:  # an impossible gate: nothing of the int8 graph is left, the bundle keeps fp32
        assert file is None and not result.passed and backend == "onnxruntime" and not (tmp_path / f"{name}.int8.onnx").exists()
    elif file is not None:
        assert result.passed and result.mean_rel <= 0.25 and (tmp_path / file).is_file()
    else:  # held on ONNX Runtime, not on OpenVINO (the builtin tiny decoder's case, docs/decisions.md)
        assert backend == "openvino" and not result.passed and not (tmp_path / f"{name}.int8.onnx").exists()


def test_export_refuses_a_variant_that_makes_another_clip_than_the_full_decoder(tiny_t2v_dir):
    """A tiny decoder made for a causal autoencoder (time upsampling 4x) in a per-frame UNet bundle: its frames could not
    stand in for the full decoder's, so its contract is refused in one line naming both shapes."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.tiny_decoder import TinyDecoder
    from turbo_edge.export.contracts import ContractError, ExportShapes, decoder_variant_component

    model = load_teacher(tiny_t2v_dir)
    shapes = ExportShapes(SYN["frames"], 16, 16)
    timed = TinyDecoder(latent_channels=4, channels=(16, 16), temporal_upsample=(4,), causal_first_frame=True)
    with pytest.raises(ContractError) as err:
        decoder_variant_component(model, shapes, "tiny", timed)
    message = str(err.value)
    assert "\n" not in message and "temporal upsampling 4x" in message and "into frames [1, 9, 3, 16, 16]" in message
    assert "full decoder makes [1, 3, 3, 16, 16]" in message and "decoder train" in message
    with pytest.raises(ContractError, match=r"cannot decode this model's latents \[1, 4, 3, 8, 8\] \(RuntimeError"):
        decoder_variant_component(model, shapes, "tiny", TinyDecoder(latent_channels=16, channels=(16, 16)))
    contract, _ = decoder_variant_component(model, shapes, "tiny", TinyDecoder(latent_channels=4, channels=(16, 16)))
    assert contract.name == "vae_decoder_tiny"


def test_export_refuses_a_decoder_the_model_lacks(tiny_t2v_dir, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_t2v_dir), "--out", str(tmp_path / "b"), "--precision", "fp32", "--decoder", "full,tiny"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no 'tiny' decoder; it has ['full']" in err[0] and not (tmp_path / "b").exists()


def test_configs_take_a_decoder_where_it_means_something(synthetic_tiny_bundle):
    from turbo_edge.spec.configs import BenchConfig, EvalConfig, ExportConfig, ServeConfig

    assert EvalConfig(model=str(synthetic_tiny_bundle), decoder="tiny").decoder == "tiny"  # a bundle's decoder, as a model dir's
    with pytest.raises(ValueError, match="is an evaluator anchor"):
        EvalConfig(model="noise", decoder="tiny")
    with pytest.raises(ValueError, match="--decoder chooses among a bundle's decoders"):
        BenchConfig(model="builtin", decoders=("tiny",))
    assert ServeConfig(bundle=str(synthetic_tiny_bundle), decoder="tiny").decoder == "tiny"
    assert ExportConfig(decoders=("tiny", "full")).decoders == ("tiny", "full")
    for bad in (("full", "full"), ()):
        with pytest.raises(ValueError, match="must name each decoder once"):
            ExportConfig(decoders=bad)
    assert ExportConfig().content_hash() != ExportConfig(decoders=("full", "tiny")).content_hash()  # another bundle, another hash
