"""The C++ runtime on DiT bundles: its Unigram tokenizer against transformers and the Python runtime, and its frames
(flow Euler + CFG, the mask, the whole-clip decoder) against the Python runtime's on OpenVINO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cpp_host import run_host
from dit_bundles import make_dit_bundle, make_dit_range_bundle, student_contract, teacher_contract
from test_unigram_tokenizer import _tokenizers_only
from tokenizer_cases import UNIGRAM_LENGTH, UNIGRAM_PROMPTS, unigram_json_tokenizer

from turbo_edge.runtime import Pipeline
from turbo_edge.spec.unigram import UnigramTokenizer


def _cpp_tokens(host: Path, tok_dir: Path, length: int, text: str) -> tuple[list[int], bool, list[int]]:
    proc = run_host(host, "tokenize", str(tok_dir), str(length), text)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    return [int(i) for i in lines[0].split()], lines[1] == "truncated", [int(i) for i in lines[2].split()]


@pytest.mark.parametrize("text", UNIGRAM_PROMPTS)
def test_cpp_unigram_ids_and_mask_equal_transformers(host, tmp_path_factory, text: str) -> None:
    pytest.importorskip("transformers", reason="transformers writes the tokenizer (this run blocks it: pytest -p no_torch)")
    from transformers import AutoTokenizer

    tok_dir = tmp_path_factory.getbasetemp() / "cpp_t5_tokenizer"
    if not tok_dir.exists():
        unigram_json_tokenizer(tok_dir)
    ref = AutoTokenizer.from_pretrained(tok_dir)(text, padding="max_length", max_length=UNIGRAM_LENGTH, truncation=True)
    ids, truncated, mask = _cpp_tokens(host, tok_dir, UNIGRAM_LENGTH, text)
    assert ids == ref.input_ids and mask == ref.attention_mask
    assert truncated == UnigramTokenizer.from_dir(tok_dir).encode(text).truncated


@pytest.mark.parametrize("text", ["a red circle", "red " * 10, "a é zebra 42", ""])
def test_cpp_unigram_equals_python_without_transformers(host, tmp_path: Path, text: str) -> None:
    tok_dir = _tokenizers_only(tmp_path / "tok")
    ours = UnigramTokenizer.from_dir(tok_dir, 8).encode(text)
    assert _cpp_tokens(host, tok_dir, 8, text) == (ours.ids, ours.truncated, ours.mask)


def test_cpp_refuses_a_normaliser_it_does_not_implement_in_one_line(host, tmp_path: Path) -> None:
    """Precompiled, Strip and Replace are implemented (test_cpp_unigram_precompiled.py); NFKC, say, is not."""
    tok_dir = _tokenizers_only(tmp_path / "tok")
    spec = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}]}
    (tok_dir / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    proc = run_host(host, "tokenize", str(tok_dir), "8", "a red")
    assert proc.returncode == 2 and "normaliser (NFKC)" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("steps", [2, 3])
def test_cpp_frames_equal_python_on_a_dit_bundle(host, tmp_path: Path, steps: int) -> None:
    bundle, _ = make_dit_bundle(tmp_path / "dit", teacher_contract())
    py = Pipeline.from_bundle(bundle, backend="openvino").generate("a red circle left", steps=steps, seed=3)
    out = tmp_path / "frames"
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--seed", "3", "--steps", str(steps), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["frames"] == py.shape[0] == 9
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1 and py.std() > 10


@pytest.mark.parametrize("steps", [1, 4])
def test_cpp_frames_equal_python_on_a_flow_consistency_student(host, tmp_path: Path, steps: int) -> None:
    bundle, _ = make_dit_bundle(tmp_path / "student", student_contract())
    py = Pipeline.from_bundle(bundle, backend="openvino").generate("a red circle left", steps=steps, seed=9)
    out = tmp_path / "frames"
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--seed", "9", "--steps", str(steps), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1 and py.std() > 10


@pytest.mark.parametrize("decoder", ["tiny", "full"])
def test_cpp_frames_equal_python_with_a_dit_bundles_decoders(host, tmp_path: Path, decoder: str) -> None:
    """``--decoder tiny`` on a DiT bundle: the variant's 1 + 4(f - 1) frames, in the full decoder's order."""
    bundle, _ = make_dit_bundle(tmp_path / "dit", teacher_contract(), decoders=("full", "tiny"))
    py = Pipeline.from_bundle(bundle, backend="openvino", decoder=decoder).generate("a red circle left", steps=2, seed=5)
    out = tmp_path / "frames"
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--seed", "5", "--steps", "2", "--decoder", decoder,
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["decoder"] == decoder and result["frames"] == py.shape[0] == 9
    cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1 and py.std() > 10


def test_cpp_refuses_a_decoder_a_dit_bundle_lacks_as_python_does(host, tmp_path: Path) -> None:
    from turbo_edge.spec.errors import BundleError

    bundle, _ = make_dit_bundle(tmp_path / "dit", teacher_contract())
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--decoder", "tiny", "--out", str(tmp_path / "o"))
    with pytest.raises(BundleError) as err:
        Pipeline.from_bundle(bundle, backend="openvino", decoder="tiny")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}" and "it has ['full']" in proc.stderr


@pytest.mark.slow  # exports the Wan test configuration (~30 s on 2 busy cores)
def test_cpp_frames_equal_python_on_the_exported_wan_test_bundle(host, wan_tiny_dir: Path, tmp_path: Path) -> None:
    """The Wan test configuration with a tiny decoder (``wan_tiny_dir``) exported with ``--decoder full,tiny``: both
    decoders, fp32 and int8 (the variant's int8 where its gate held), C++ frames equal to Python's."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    cfg = ExportConfig(precisions=("fp32", "int8"), frames=9, height=32, width=32, default_steps=2, supported_steps=(2,), openvino_check=False,
                       int8_calibration_prompts=2, int8_calibration_steps=2, int8_subset_size=4, int8_bias_correction=False, int8_scope="all",
                       decoders=("full", "tiny"))
    bundle = export_bundle(wan_tiny_dir, tmp_path / "wan", cfg)
    for precision in ("fp32", "int8"):
        for decoder in ("full", "tiny"):
            py = Pipeline.from_bundle(bundle, backend="openvino", precision=precision, decoder=decoder).generate("a red circle moving left", seed=3)
            out = tmp_path / f"frames_{precision}_{decoder}"
            proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle moving left", "--seed", "3", "--precision", precision,
                            "--decoder", decoder, "--out", str(out))
            assert proc.returncode == 0, proc.stderr
            cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
            assert py.shape == (9, 32, 32, 3) and np.abs(cpp.astype(int) - py.astype(int)).max() <= 1, (precision, decoder)


@pytest.mark.parametrize("frames", [5, 13])
def test_cpp_frames_equal_python_on_a_hand_built_range_bundle(host, tmp_path: Path, frames: int) -> None:
    """The "steps" decoder loop without torch: hand-built step graphs whose cache order shows in every frame."""
    bundle, _ = make_dit_range_bundle(tmp_path / "dit", teacher_contract())
    py = Pipeline.from_bundle(bundle, backend="openvino").generate("a red circle left", steps=2, seed=3, frames=frames)
    out = tmp_path / "frames"
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--seed", "3", "--steps", "2", "--frames", str(frames),
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
    assert py.shape[0] == frames and np.abs(cpp.astype(int) - py.astype(int)).max() <= 1 and py.std() > 10
    for bad in ("10", "17"):  # one line, the same as Python's
        proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red", "--frames", bad, "--out", str(tmp_path / f"o{bad}"))
        with pytest.raises(Exception) as err:
            Pipeline.from_bundle(bundle, backend="openvino").generate("a red", frames=int(bad))
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}" and "5 to 13 frames" in proc.stderr


@pytest.fixture(scope="module")
def wan_range_bundle(wan_test_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Wan test configuration exported for clip lengths 5 to 13 (fp32): the causal decoder's step graphs."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    cfg = ExportConfig(precisions=("fp32",), frames=9, min_frames=5, max_frames=13, height=32, width=32, default_steps=2, supported_steps=(2,),
                       openvino_check=False, threads=2)
    return export_bundle(wan_test_dir, tmp_path_factory.mktemp("cpp_range") / "wan", cfg)


@pytest.mark.parametrize("frames", [5, 13])
def test_cpp_frames_equal_python_at_two_lengths_of_a_range_bundle(host, wan_range_bundle: Path, tmp_path: Path, frames: int) -> None:
    """``--frames N`` on a bundle exported with ``--min-frames 5 --max-frames 13``: the host's step-decoder loop (first
    graph, then one step per later latent frame with the cache fed back) against the Python runtime's."""
    py = Pipeline.from_bundle(wan_range_bundle, backend="openvino").generate("a red circle moving left", steps=2, seed=3, frames=frames)
    out = tmp_path / "frames"
    proc = run_host(host, "--bundle", str(wan_range_bundle), "--prompt", "a red circle moving left", "--seed", "3", "--frames", str(frames),
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["frames"] == py.shape[0] == frames
    cpp = np.fromfile(out / "frames.rgb", dtype=np.uint8).reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1 and py.std() > 5


@pytest.mark.parametrize("frames", [8, 17])
def test_cpp_refuses_a_length_outside_the_range_as_python_does(host, wan_range_bundle: Path, tmp_path: Path, frames: int) -> None:
    from turbo_edge.spec.errors import RuntimeInputError

    with pytest.raises(RuntimeInputError) as err:
        Pipeline.from_bundle(wan_range_bundle, backend="openvino").generate("a red circle", frames=frames)
    proc = run_host(host, "--bundle", str(wan_range_bundle), "--prompt", "a red circle", "--frames", str(frames), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}" and "5 to 13 frames" in proc.stderr


@pytest.mark.parametrize("lead_in", [1, 0, 9, -1, True, 0.5, "1"])
def test_a_bundles_lead_in_frames_is_read_or_refused_alike(host, tmp_path: Path, lead_in) -> None:
    """``video.lead_in_frames`` (a DiT card's lead-in, written at export): eval and demo skip that many frames; a value
    outside 0 .. frames - 1 or not an integer is refused by the Python reader and the C++ host in one line."""
    from turbo_edge.spec.bundle import load_bundle
    from turbo_edge.spec.errors import BundleError

    bundle, _ = make_dit_bundle(tmp_path / "dit", teacher_contract())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["video"]["lead_in_frames"] = lead_in
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    proc = run_host(host, "--bundle", str(bundle), "--prompt", "a red circle left", "--steps", "2", "--out", str(tmp_path / "o"))
    if lead_in in (0, 1) and not isinstance(lead_in, bool):
        assert load_bundle(bundle).lead_in_frames == lead_in  # eval's reading (model_lead_in, needs torch): tests/export
        assert proc.returncode == 0, proc.stderr
    else:
        with pytest.raises(BundleError, match="video.lead_in_frames must be an integer from 0 to video.frames - 1"):
            load_bundle(bundle)
        assert proc.returncode == 2 and "video.lead_in_frames must be an integer" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
