import json
import shutil

import pytest
from tokenizer_cases import TOKENIZER_PROMPTS, transformers_json_tokenizer, with_string_merges
from transformers import CLIPTokenizer

from turbo_edge.core import world
from turbo_edge.spec.tokenizer import ClipTokenizer, bpe_files
from turbo_edge.spec.tokenizer_files import write_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"), world.vocabulary(), model_max_length=16)


def test_every_world_word_is_one_token(tok_dir):
    hf = CLIPTokenizer.from_pretrained(tok_dir)
    for word in world.vocabulary():
        assert hf.tokenize(word) == [word + "</w>"]


@pytest.mark.parametrize(
    "text",
    ["a red circle moving left", "", "A  White DIAMOND staying still", "a dog jumping!! 12 _x", "purple " * 20, "ça va"],
)
def test_python_runtime_tokenizer_matches_transformers(tok_dir, text):
    hf = CLIPTokenizer.from_pretrained(tok_dir)
    ours = ClipTokenizer.from_dir(tok_dir)
    expected = hf(text, padding="max_length", max_length=16, truncation=True).input_ids
    assert ours.encode(text).ids == expected


def test_truncation_and_unknown_words_are_reported(tok_dir):
    ours = ClipTokenizer.from_dir(tok_dir)
    enc = ours.encode("a red circle moving left " * 4)
    assert enc.truncated and len(enc.ids) == 16
    enc = ours.encode("a red dog")
    assert enc.unknown_words == ["dog"] and not enc.truncated


def test_missing_files_give_clear_error(tmp_path):
    (tmp_path / "vocab.json").write_text("{}")  # half of the pair is no tokenizer either
    with pytest.raises(FileNotFoundError, match=r"holds neither tokenizer.json nor vocab.json \+ merges.txt") as exc:
        ClipTokenizer.from_dir(tmp_path)
    assert "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def json_tok_dir(tmp_path_factory):
    return transformers_json_tokenizer(tmp_path_factory.mktemp("tok_json") / "tokenizer", max_length=16)


@pytest.mark.parametrize("text", TOKENIZER_PROMPTS)
def test_tokenizer_json_only_dir_matches_transformers(json_tok_dir, tok_dir, text):
    hf = CLIPTokenizer.from_pretrained(json_tok_dir)
    expected = hf(text, padding="max_length", max_length=16, truncation=True).input_ids
    ours = ClipTokenizer.from_dir(json_tok_dir)  # max_length from transformers' own tokenizer_config.json
    assert bpe_files(json_tok_dir) == ("tokenizer.json",) and ours.max_length == 16
    assert ours.encode(text).ids == expected == ClipTokenizer.from_dir(tok_dir).encode(text).ids


def test_string_merges_read_as_pairs(json_tok_dir, tmp_path):
    strings = with_string_merges(shutil.copytree(json_tok_dir, tmp_path / "tok"))
    assert all(isinstance(m, str) for m in json.loads((strings / "tokenizer.json").read_text())["model"]["merges"])
    pairs = ClipTokenizer.from_dir(json_tok_dir)
    ours = ClipTokenizer.from_dir(strings)
    assert ours.ranks == pairs.ranks and ours.vocab == pairs.vocab and len(ours.ranks) > 0
    hf = CLIPTokenizer.from_pretrained(strings)
    for text in TOKENIZER_PROMPTS:
        assert ours.encode(text).ids == hf(text, padding="max_length", max_length=16, truncation=True).input_ids


def test_vocab_and_merges_are_preferred_when_both_forms_are_there(json_tok_dir, tok_dir, tmp_path):
    both = shutil.copytree(json_tok_dir, tmp_path / "tok")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tok_dir / name, both / name)
    assert bpe_files(both) == ("vocab.json", "merges.txt")


@pytest.mark.parametrize(("model", "match"), [
    ({"type": "WordPiece", "vocab": {"a": 0}}, "'WordPiece' tokenizer model, not a BPE one"),
    ({"type": "BPE", "vocab": {"a": 0}}, "BPE model lacks its vocab \\(an object\\) or merges"),
    ({"type": "BPE", "vocab": {"a": 0}, "merges": [], "end_of_word_suffix": ""}, "ends words with '', not CLIP's '</w>'"),
    ({"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b", "c"]]}, "merge \\['a', 'b', 'c'\\] is neither"),
])
def test_tokenizer_json_that_is_not_clip_bpe_is_one_line(tmp_path, model, match):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": model}))
    with pytest.raises(ValueError, match=match) as exc:
        ClipTokenizer.from_dir(tmp_path)
    assert "\n" not in str(exc.value) and "tokenizer.json" in str(exc.value)
