"""Tokenizer directories as transformers 5 writes them, and the prompts every tokenizer reader is compared on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from turbo_edge.core import world
from turbo_edge.spec.tokenizer_files import write_tokenizer

# Punctuation, digits, contractions, an unknown word, whitespace and case, one prompt that truncates, none at all.
TOKENIZER_PROMPTS = [
    "a red circle moving left",
    "A  White DIAMOND, staying still.",
    "a dog jumping!! 12 _x",
    "it's a square that'll move; they're 3",
    "zebra",
    "purple " * 20,
    "",
]


def transformers_json_tokenizer(directory: Path, max_length: int) -> Path:
    """The project's world vocabulary, loaded by transformers' CLIPTokenizer and saved again: tokenizer.json only."""
    from transformers import CLIPTokenizer

    src = write_tokenizer(directory.parent / f".{directory.name}_bpe_pair", world.vocabulary(), max_length)
    CLIPTokenizer.from_pretrained(src).save_pretrained(directory)
    shutil.rmtree(src)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):  # whatever this transformers still writes
        (directory / name).unlink(missing_ok=True)
    assert sorted(p.name for p in directory.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    return directory


def with_string_merges(directory: Path) -> Path:
    """Rewrite tokenizer.json's merges as ``"a b"`` strings (the other form transformers writes)."""
    path = directory / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return directory


# The Unigram (T5 / UMT5) tokenizer's shared cases: punctuation, digits, Unicode outside the vocabulary, words never
# seen (letters then), whitespace of every kind, a prompt longer than the model's length (truncation keeps </s>), none.
UNIGRAM_PROMPTS = [
    "a red circle moving left",
    "A  White DIAMOND, staying still.",
    "a dog jumping!! 12 _x",
    "it's a square that'll move; they're 3",
    "zebra",
    "héllo wörld — 你好 🎉 café",
    "  leading and trailing  ",
    "a\tred\ncircle",
    "12345 67.8 3,000",
    "purple " * 30,
    "",
]
UNIGRAM_LENGTH = 24


def unigram_json_tokenizer(directory: Path, max_length: int = UNIGRAM_LENGTH) -> Path:
    """A T5 Unigram tokenizer over the world's words (plus letters and digits) as transformers 5 writes it, the way
    the Wan test pipeline builds its own (``tests/tiny_models.py``): ``tokenizer.json`` + ``tokenizer_config.json``."""
    from transformers import T5Tokenizer

    from turbo_edge.core.wan import unigram_vocab

    tok = T5Tokenizer(vocab=unigram_vocab(world.vocabulary() + ["cat", "dog", "running"]), extra_ids=0, model_max_length=max_length)
    tok.save_pretrained(directory)
    return directory
