"""The C++ runtime's Unigram tokenizer on T5 / UMT5 tokenizer.json files that carry SentencePiece's precompiled
character map, as Google's UMT5 (Wan2.1's text encoder) does. We have no Google file here: a tiny SentencePiece
Unigram model trained with the nmt_nfkc rule (the map real T5 / UMT5 models embed) is turned into tokenizer.json by
transformers in both forms (``tokenizer_cases.umt5_tokenizer``): what transformers 5 saves, and what its
T5Converter writes (Google's form: Precompiled + Strip + Replace, Metaspace alone).

The host's ids and mask are compared with transformers' and the Python runtime's (``spec/unigram.py``: the
tokenizers package on the file) on the shared cases, and with the Python runtime's on random prompts; its grapheme
clusters with the ``regex`` module's ``\\X`` (Unicode 17.0, as tokenizers' unicode-segmentation crate).
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
from pathlib import Path

import pytest
from cpp_host import ROOT, run_host
from test_unigram_tokenizer import _tokenizers_only
from tokenizer_cases import PRECOMPILED_PROMPTS, UNIGRAM_LENGTH, random_unicode_prompts, umt5_tokenizer

from turbo_edge.spec.unigram import UnigramTokenizer

FORMS = ("saved", "converted")
RANDOM_PROMPTS = 300  # per form, fixed seed
RANDOM_SEED = 31
RANDOM_LENGTH = 16  # shorter than the cases' 24, so that ~1 random prompt in 6 truncates


def _write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def _cpp_encode(host: Path, tok_dir: Path, texts: list[str], length: int = UNIGRAM_LENGTH) -> list[tuple[list[int], bool, list[int]]]:
    """The host's (ids, truncated, mask) for each text, from one ``tokenize-lines`` run."""
    proc = run_host(host, "tokenize-lines", str(tok_dir), str(length), str(_write_lines(tok_dir.parent / "prompts.jsonl", texts)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    return [([int(i) for i in lines[3 * k].split()], lines[3 * k + 1] == "truncated", [int(m) for m in lines[3 * k + 2].split()])
            for k in range(len(texts))]


def _python_encode(tok_dir: Path, texts: list[str], length: int = UNIGRAM_LENGTH) -> list[tuple[list[int], bool, list[int]]]:
    tok = UnigramTokenizer(tok_dir / "tokenizer.json", length)
    return [(e.ids, e.truncated, e.mask) for e in map(tok.encode, texts)]


def _mismatches(texts: list[str], got: list, want: list) -> list[str]:
    return [f"{t!r}: C++ {g[0]} != {w[0]}" for t, g, w in zip(texts, got, want) if g != w]


@pytest.fixture(scope="module", params=FORMS)
def umt5_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sentencepiece", reason="sentencepiece trains the nmt_nfkc model (pyproject.toml's dev extras)")
    pytest.importorskip("transformers", reason="transformers writes the tokenizer.json (this run blocks it: pytest -p no_torch)")
    return umt5_tokenizer(tmp_path_factory.mktemp(f"umt5_{request.param}") / "tokenizer", request.param)


@pytest.fixture(scope="module")
def cpp_cases(host: Path, umt5_dir: Path) -> dict[str, tuple[list[int], bool, list[int]]]:
    return dict(zip(PRECOMPILED_PROMPTS, _cpp_encode(host, umt5_dir, PRECOMPILED_PROMPTS)))


def test_the_files_have_the_forms_transformers_writes(umt5_dir: Path) -> None:
    spec = json.loads((umt5_dir / "tokenizer.json").read_text(encoding="utf-8"))
    normalizers = spec["normalizer"]["normalizers"] if spec["normalizer"]["type"] == "Sequence" else [spec["normalizer"]]
    pre = spec["pre_tokenizer"]
    if umt5_dir.parent.name.startswith("umt5_saved"):
        assert [n["type"] for n in normalizers] == ["Precompiled"]
        assert [p["type"] for p in pre["pretokenizers"]] == ["WhitespaceSplit", "Metaspace"]
    else:
        assert [n["type"] for n in normalizers] == ["Precompiled", "Strip", "Replace"] and normalizers[2]["pattern"] == {"Regex": " {2,}"}
        assert pre["type"] == "Metaspace" and pre["prepend_scheme"] == "always" and pre["split"]
    assert len(normalizers[0]["precompiled_charsmap"]) > 100_000  # nmt_nfkc's map, base64


@pytest.mark.parametrize("text", PRECOMPILED_PROMPTS)
def test_cpp_ids_and_mask_equal_transformers_and_python(umt5_dir: Path, cpp_cases: dict, text: str) -> None:
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(umt5_dir)(text, padding="max_length", max_length=UNIGRAM_LENGTH, truncation=True)
    ids, truncated, mask = cpp_cases[text]
    ours = UnigramTokenizer.from_dir(umt5_dir).encode(text)
    assert ids == ref.input_ids and mask == ref.attention_mask
    assert (ids, truncated, mask) == (ours.ids, ours.truncated, ours.mask)


def test_cpp_equals_python_on_random_unicode_prompts(host: Path, umt5_dir: Path) -> None:
    from tokenizers import Tokenizer

    texts = random_unicode_prompts(RANDOM_PROMPTS, RANDOM_SEED)
    want = _python_encode(umt5_dir, texts, RANDOM_LENGTH)
    assert _mismatches(texts, _cpp_encode(host, umt5_dir, texts, RANDOM_LENGTH), want) == []
    # The draws exercise what they are for: the charsmap rewrites most prompts, some hold special tokens, some truncate.
    normalizer = Tokenizer.from_file(str(umt5_dir / "tokenizer.json")).normalizer
    assert sum(normalizer.normalize_str(t) != t for t in texts) > RANDOM_PROMPTS // 2
    assert sum("</s>" in t or "<pad>" in t or "<extra_id_0>" in t for t in texts) > 20 and sum(w[1] for w in want) > 30


# Edits of the converted (Google) form: the other Metaspace options, Strip on both sides, and the Precompiled map
# alone (where a CR LF cluster, looked up whole, becomes one space instead of two).
VARIANTS = {
    "prepend first": lambda s: s["pre_tokenizer"].update(prepend_scheme="first"),
    "prepend never": lambda s: s["pre_tokenizer"].update(prepend_scheme="never"),
    "no split": lambda s: s["pre_tokenizer"].update(split=False),
    "strip both": lambda s: s["normalizer"]["normalizers"][1].update(strip_left=True),
    "literal replace": lambda s: s["normalizer"]["normalizers"][2].update(pattern={"String": "  "}, content="_"),
    "precompiled alone": lambda s: s.update(normalizer=s["normalizer"]["normalizers"][0]),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cpp_equals_python_on_the_other_options(host: Path, tmp_path_factory: pytest.TempPathFactory, variant: str) -> None:
    pytest.importorskip("sentencepiece", reason="sentencepiece trains the nmt_nfkc model (pyproject.toml's dev extras)")
    pytest.importorskip("transformers", reason="transformers writes the tokenizer.json (this run blocks it: pytest -p no_torch)")
    base = tmp_path_factory.getbasetemp() / "umt5_variant_base" / "tokenizer"
    if not base.exists():
        umt5_tokenizer(base, "converted")
    spec = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    VARIANTS[variant](spec)
    tok_dir = tmp_path_factory.mktemp("variant") / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    texts = PRECOMPILED_PROMPTS + random_unicode_prompts(100, RANDOM_SEED + 1)
    want = _python_encode(tok_dir, texts, RANDOM_LENGTH)
    assert _mismatches(texts, _cpp_encode(host, tok_dir, texts, RANDOM_LENGTH), want) == []


# ------------------------------------------------------------------ grapheme clusters and their property table


def _table_generator():
    spec = importlib.util.spec_from_file_location("gen_grapheme_table", ROOT / "runtime" / "cpp" / "tools" / "gen_grapheme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_grapheme_table_is_what_its_generator_writes() -> None:
    gen = _table_generator()
    assert (ROOT / "runtime" / "cpp" / "src" / "grapheme_table.inc").read_text(encoding="utf-8") == gen.render(gen.property_values())


# One sequence per UAX #29 rule (GB3 ... GB13), both sides of it.
GRAPHEME_CASES = [
    "\r\n", "\r\r\n\n", "a\r\u0301", "\x01\u0301",  # GB3-GB5
    "\u1100\u1161\u11a8", "\u1100\uac00", "\uac00\u11a8\u11a8", "\uac01\u1161", "\u1161\u1100",  # GB6-GB8
    "e\u0301\u0308", "a\u200d", "a\u0903b", "\u0600a", "\u0600\r",  # GB9, GB9a, GB9b
    "\u0915\u094d\u0937", "\u0915\u094d\u200d\u0937", "\u0915\u093c\u094d\u0937\u094d\u0915", "\u0915\u0937", "a\u094d\u0937",  # GB9c
    "👩\u200d👩\u200d👧", "👍🏽\u200d🎉", "a\u200d🎉", "©\u200d©", "🎉🎉",  # GB11
    "🇫🇷🇩🇪", "🇫🇷🇩", "a🇫🇷🇩\u0301",  # GB12, GB13
]


def _regex_clusters(text: str) -> list[int]:
    import regex

    return [len(c.encode("utf-8")) for c in regex.findall(r"\X", text)]


def test_cpp_grapheme_clusters_equal_the_regex_modules(host: Path, tmp_path: Path) -> None:
    """Every rule's cases, then 2,000 random sequences of 1-8 code points, each from a random class of the table
    (so every pair of Grapheme_Cluster_Break / Extended_Pictographic / Indic_Conjunct_Break values meets)."""
    pytest.importorskip("regex", reason="the regex module is the grapheme-cluster oracle (pyproject.toml's dev extras)")
    values = _table_generator().property_values()
    classes: dict[int, list[int]] = {}
    for c, v in enumerate(values):
        if not 0xD800 <= c < 0xE000:
            classes.setdefault(v, []).append(c)
    rng = random.Random(RANDOM_SEED)
    pools = list(classes.values())
    texts = GRAPHEME_CASES + ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(1, 8))) for _ in range(2000)]
    proc = run_host(host, "graphemes", str(_write_lines(tmp_path / "texts.jsonl", texts)))
    assert proc.returncode == 0, proc.stderr
    got = [[int(n) for n in line.split()] for line in proc.stdout.split("\n")[: len(texts)]]
    assert [f"{t!r}: {g}" for t, g in zip(texts, got) if g != _regex_clusters(t)] == []
    assert len(classes) == 18  # the distinct values: each break class, Extended_Pictographic, InCB Consonant / Extend / Linker


# ------------------------------------------------------------------ what the C++ tokenizer refuses, in one line


REFUSED = {
    "a normaliser it does not implement": (lambda s: s.update(normalizer={"type": "NFKC"}), "normaliser (NFKC)"),
    "a Replace regex": (lambda s: s.update(normalizer={"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}), "Replace normaliser"),
    "a malformed charsmap": (lambda s: s.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "AAE="}), "precompiled_charsmap"),
    "another pre-tokeniser": (lambda s: s.update(pre_tokenizer={"type": "ByteLevel"}), "pre-tokeniser"),
    "first after WhitespaceSplit": (lambda s: s["pre_tokenizer"]["pretokenizers"][1].update(prepend_scheme="first"), "first word only"),
    "a normalized added token": (lambda s: s["added_tokens"][0].update(normalized=True), "added token '<pad>'"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_cpp_refuses_what_it_does_not_implement_in_one_line(host: Path, tmp_path: Path, case: str) -> None:
    edit, message = REFUSED[case]
    tok_dir = _tokenizers_only(tmp_path / "tok")
    spec = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    (tok_dir / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    proc = run_host(host, "tokenize", str(tok_dir), "8", "a red")
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cpp_refuses_a_prompt_that_is_not_utf8(host: Path, tmp_path: Path) -> None:
    tok_dir = _tokenizers_only(tmp_path / "tok")
    proc = subprocess.run([str(host), "tokenize", str(tok_dir), "8", b"a \xff red"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: the prompt is not valid UTF-8"
