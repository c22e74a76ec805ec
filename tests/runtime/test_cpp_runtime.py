"""The C++ runtime (runtime/cpp): built with CMake against the openvino wheel, compared with the Python runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.spec.noise import normal
from turbo_edge.spec.tokenizer import ClipTokenizer

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "runtime_cpp"  # gitignored; reused across runs (CMake rebuilds only what changed)
PROMPT = "a red circle moving left"


from cpp_host import run_host as _run  # noqa: E402


def test_cpp_noise_matches_python_golden_values_and_many_more(host):
    for seed, stream, n in ((0, 0, 4), (123456789, 5, 3), (7, 2**32 + 3, 20000)):
        cpp = np.array(_run(host, "noise", str(seed), str(stream), str(n)).stdout.split(), dtype=np.float32)
        assert np.array_equal(cpp, normal(seed, stream, (n,)))


@pytest.mark.parametrize("text", [PROMPT, "A  White DIAMOND staying still", "a dog jumping!! 12 _x it's", "purple " * 20, ""])
def test_cpp_tokenizer_ids_equal_python(host, synthetic_student_bundle, text):
    tok_dir = synthetic_student_bundle / "tokenizer"
    out = _run(host, "tokenize", str(tok_dir), "8", text).stdout.split("\n")
    ours = ClipTokenizer.from_dir(tok_dir, max_length=8).encode(text)
    assert [int(i) for i in out[0].split()] == ours.ids
    assert (out[1] == "truncated") == ours.truncated


def test_cpp_sha256(host, synthetic_student_bundle):
    import hashlib

    f = synthetic_student_bundle / "unet.onnx"
    assert _run(host, "sha256", str(f)).stdout.strip() == hashlib.sha256(f.read_bytes()).hexdigest()


def _cpp_frames(host: Path, bundle: Path, out: Path, *extra: str) -> np.ndarray:
    proc = _run(host, "--bundle", str(bundle), "--prompt", PROMPT, "--seed", "3", "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(out / "frames.rgb", dtype=np.uint8)


def test_cpp_host_replaces_only_its_own_frames(host, synthetic_student_bundle, tmp_path):
    import json

    out = tmp_path / "frames"
    first = _cpp_frames(host, synthetic_student_bundle, out)
    record = json.loads((out / ".turbo-edge-output.json").read_text())
    assert record["run_id"] and sorted(record["files"]) == sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    again = _run(host, "--bundle", str(synthetic_student_bundle), "--prompt", PROMPT, "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    (tmp_path / "notes.txt").write_text("years of work")
    record["files"].append("../notes.txt")  # a record naming a file outside --out is never acted on
    (out / ".turbo-edge-output.json").write_text(json.dumps(record))
    assert np.array_equal(_cpp_frames(host, synthetic_student_bundle, out, "--overwrite"), first)
    assert (tmp_path / "notes.txt").read_text() == "years of work"
    (out / "mine.txt").write_text("x")
    refused = _run(host, "--bundle", str(synthetic_student_bundle), "--prompt", PROMPT, "--out", str(out), "--overwrite")
    assert refused.returncode == 2 and "mine.txt" in refused.stderr and (out / "mine.txt").read_text() == "x"


@pytest.mark.parametrize("which", ["synthetic_teacher_bundle", "synthetic_student_bundle"])
def test_cpp_frames_equal_python_openvino(host, which, request, tmp_path):
    bundle = request.getfixturevalue(which)
    py = Pipeline.from_bundle(bundle, backend="openvino").generate(PROMPT, seed=3)
    cpp = _cpp_frames(host, bundle, tmp_path).reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1


def test_cpp_frames_equal_python_on_exported_bundle(host, exported_teacher_bundle, tmp_path):
    py = Pipeline.from_bundle(exported_teacher_bundle, backend="openvino").generate(PROMPT, seed=3, steps=2)
    cpp = _cpp_frames(host, exported_teacher_bundle, tmp_path, "--steps", "2").reshape(py.shape)
    assert np.abs(cpp.astype(int) - py.astype(int)).max() <= 1
    assert (tmp_path / "frame_000.ppm").read_bytes().startswith(b"P6\n")


def test_cpp_frames_flag_takes_a_length_in_the_unet_bundles_profile_as_python(host, synthetic_teacher_bundle, tmp_path):
    """``--frames N``: a length inside the profile's frames axis gives Python's frames; one outside, Python's line."""
    from turbo_edge.spec.errors import RuntimeInputError

    pipe = Pipeline.from_bundle(synthetic_teacher_bundle, backend="openvino")
    py = pipe.generate(PROMPT, seed=3, frames=2)
    cpp = _cpp_frames(host, synthetic_teacher_bundle, tmp_path / "a", "--frames", "2").reshape(py.shape)
    assert py.shape[0] == 2 and np.abs(cpp.astype(int) - py.astype(int)).max() <= 1
    with pytest.raises(RuntimeInputError) as err:
        pipe.generate(PROMPT, frames=64)
    proc = _run(host, "--bundle", str(synthetic_teacher_bundle), "--prompt", PROMPT, "--frames", "64", "--out", str(tmp_path / "b"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}" and "outside the bundle's profile" in proc.stderr


def test_cpp_errors_are_clear(host, synthetic_student_bundle, tmp_path):
    bad = shutil.copytree(synthetic_student_bundle, tmp_path / "b")
    with open(bad / "vae_decoder.onnx", "ab") as f:
        f.write(b"\0")
    proc = _run(host, "--bundle", str(bad), "--prompt", PROMPT, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "vae_decoder.onnx" in proc.stderr and "changed after export" in proc.stderr
    cases = {("--prompt", "a red dog"): "never trained on: 'dog'", ("--prompt", PROMPT, "--steps", "3"): "steps=3 is not supported",
             ("--prompt", "  "): "empty prompt"}
    for args, message in cases.items():
        proc = _run(host, "--bundle", str(synthetic_student_bundle), "--out", str(tmp_path / "o"), *args)
        assert proc.returncode == 2 and message in proc.stderr


# One case list for the input rules (spec/inputs.py): the C++ host gives the Python CLI's message for each.
INPUT_CASES = [
    (("--seed", "-1"), "seed must be an integer in [0, 2**63)"),
    (("--seed", "1.5"), "seed must be an integer in [0, 2**63)"),
    (("--guidance", "nan"), "guidance must be a finite number"),
    (("--guidance", "inf"), "guidance must be a finite number"),
    (("--guidance", "-5"), "guidance must be in [0, 100]"),
    (("--threads", "0"), "threads must be an integer in [1, "),
    (("--threads", "1000"), "threads must be an integer in [1, "),
]


@pytest.mark.parametrize("args,message", INPUT_CASES)
def test_cpp_and_python_refuse_the_same_inputs(host, synthetic_student_bundle, tmp_path, capsys, args, message):
    from turbo_edge import cli

    proc = _run(host, "--bundle", str(synthetic_student_bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o"), *args)
    assert proc.returncode == 2 and message in proc.stderr and not (tmp_path / "o").exists()
    assert cli.main(["generate", PROMPT, "--bundle", str(synthetic_student_bundle), "--out", str(tmp_path / "x.gif"), *args]) == 2
    assert message in capsys.readouterr().err


# Prompts a hostile but ordinary user types: both runtimes name the user's words (never the BPE's byte-level
# form such as 'ðŁļĢ'), each once, and cut long ones; the messages are the same, character for character.
PROMPT_CASES = [
    ("a red 🚀 circle", "'🚀'"),
    ("a red ｒｅｄ circle", "'ｒｅｄ'"),
    ("a red dog dog moving", "'dog'; use only: "),
    ("a red \x01 circle", "'\\x01'"),
    ("a red " + "x" * 100, "'" + "x" * 36 + "…'"),
    ("one two three four five six seven eight nine ten", "and 2 more; use only: "),
    ("a" * 10000, "prompt is 10000 characters, over the limit of 2000: '" + "a" * 54 + "…aaa'"),
]


@pytest.mark.parametrize("prompt,needle", PROMPT_CASES, ids=range(len(PROMPT_CASES)))
def test_cpp_and_python_name_the_same_words(host, synthetic_student_bundle, tmp_path, capsys, prompt, needle):
    from turbo_edge import cli

    proc = _run(host, "--bundle", str(synthetic_student_bundle), "--prompt", prompt, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    cpp = proc.stderr.strip().splitlines()[-1].split("error: ", 1)[1]
    assert cli.main(["generate", prompt, "--bundle", str(synthetic_student_bundle), "--out", str(tmp_path / "x.gif")]) == 2
    py = capsys.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1]
    assert needle in py and cpp == py and len(py) < 400
    assert "ð" not in py and "Ā" not in py
