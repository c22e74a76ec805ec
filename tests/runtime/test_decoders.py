"""Decoder variants in a bundle (``export --decoder full,tiny``): the manifest's ``decoders`` section, the Python
runtime's choice, the one-line refusal of a decoder a bundle lacks, and the C++ host and C API choosing the same
decoder with the same frames. Torch-free: synthetic bundles (tests/runtime/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SYN, make_synthetic_bundle, run_host

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
    (lambda d: d["variants"]["tiny"].update(layout="frames_of_doom"), "a layout in ['frames', 'clip']"),
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
