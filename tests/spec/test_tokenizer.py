import pytest
from transformers import CLIPTokenizer

from turbo_edge.core import world
from turbo_edge.spec.tokenizer import ClipTokenizer
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
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        ClipTokenizer.from_dir(tmp_path)
