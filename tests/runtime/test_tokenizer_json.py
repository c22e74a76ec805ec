"""Tokenizers as transformers 5 saves them (tokenizer.json only): both runtimes read them, in a bundle and alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cpp_host import run_host
from tokenizer_cases import TOKENIZER_PROMPTS, transformers_json_tokenizer, with_string_merges

from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.spec.bundle import verify_bundle
from turbo_edge.spec.tokenizer import ClipTokenizer

PROMPT = "a red circle moving left"
LENGTH = 16


@pytest.fixture(scope="module", params=["pair merges", "string merges"])
def json_tok_dir(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="transformers writes the tokenizer.json (this run blocks it: pytest -p no_torch)")
    tok = transformers_json_tokenizer(tmp_path_factory.mktemp("tok_json") / "tokenizer", LENGTH)
    return with_string_merges(tok) if request.param == "string merges" else tok


def _cpp_ids(host: Path, tok_dir: Path, text: str, length: int = LENGTH) -> tuple[list[int], bool]:
    proc = run_host(host, "tokenize", str(tok_dir), str(length), text)
    assert proc.returncode == 0, proc.stderr
    ids, state = proc.stdout.split("\n")[:2]
    return [int(i) for i in ids.split()], state == "truncated"


def test_cpp_and_python_tokenizers_give_transformers_ids(host, json_tok_dir):
    from transformers import CLIPTokenizer

    hf = CLIPTokenizer.from_pretrained(json_tok_dir)
    ours = ClipTokenizer.from_dir(json_tok_dir, max_length=LENGTH)
    for text in TOKENIZER_PROMPTS:
        expected = hf(text, padding="max_length", max_length=LENGTH, truncation=True).input_ids
        py = ours.encode(text)
        assert py.ids == expected, text
        assert _cpp_ids(host, json_tok_dir, text) == (expected, py.truncated), text
    assert ours.encode("purple " * 20).truncated and ours.encode("zebra").unknown_words  # the cases are really there


@pytest.mark.parametrize(("content", "message"), [
    (None, "holds neither tokenizer.json nor vocab.json + merges.txt"),
    # A Unigram file goes to the C++ Unigram reader (UnigramTokenizer), which refuses this one's missing pre-tokeniser;
    # the Python CLIP reader below still says it is not BPE (the Python runtime reads Unigram with spec/unigram.py).
    ({"model": {"type": "Unigram", "vocab": []}}, "its pre-tokeniser is neither Metaspace nor WhitespaceSplit + Metaspace"),
    ({"model": {"type": "BPE", "vocab": {}}}, "BPE model lacks its vocab (an object) or merges (a list)"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [], "end_of_word_suffix": None}}, "ends words with '', not CLIP's '</w>'"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [3]}}, "a merge is neither an \"a b\" string nor an [a, b] pair"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}, "lacks <|startoftext|> or <|endoftext|>"),
])
def test_cpp_tokenizer_errors_are_one_line(host, tmp_path, content, message):
    if content is not None:
        (tmp_path / "tokenizer.json").write_text(json.dumps(content))
    proc = run_host(host, "tokenize", str(tmp_path), "8", PROMPT)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    with pytest.raises((ValueError, FileNotFoundError)) as exc:  # the Python runtime refuses the same directory
        ClipTokenizer.from_dir(tmp_path, max_length=8)
    assert "\n" not in str(exc.value)


def test_tokenizer_json_bundle_runs_in_both_runtimes_like_the_vocab_json_one(host, synthetic_json_student_bundle,
                                                                              synthetic_student_bundle, tmp_path):
    files = verify_bundle(synthetic_json_student_bundle)["files"]
    assert {f for f in files if f.startswith("tokenizer/")} == {"tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"}
    json_frames = Pipeline.from_bundle(synthetic_json_student_bundle).generate(PROMPT, seed=3)
    assert np.array_equal(json_frames, Pipeline.from_bundle(synthetic_student_bundle).generate(PROMPT, seed=3))
    cpp = {}
    for name, bundle in (("json", synthetic_json_student_bundle), ("pair", synthetic_student_bundle)):
        proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--seed", "3", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        cpp[name] = np.fromfile(tmp_path / name / "frames.rgb", dtype=np.uint8)
    assert np.array_equal(cpp["json"], cpp["pair"])
    py_openvino = Pipeline.from_bundle(synthetic_json_student_bundle, backend="openvino").generate(PROMPT, seed=3)
    assert np.abs(cpp["json"].reshape(py_openvino.shape).astype(int) - py_openvino.astype(int)).max() <= 1


def test_tampered_tokenizer_json_fails_verification(host, synthetic_json_student_bundle, tmp_path):
    bad = shutil.copytree(synthetic_json_student_bundle, tmp_path / "b")
    with open(bad / "tokenizer" / "tokenizer.json", "a", encoding="utf-8") as f:
        f.write(" ")
    proc = run_host(host, "--bundle", str(bad), "--prompt", PROMPT, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "tokenizer/tokenizer.json" in proc.stderr and "changed after export" in proc.stderr
