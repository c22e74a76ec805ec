"""The runtime's Unigram (T5 / UMT5) tokenizer: transformers' ids and mask on the shared cases, and without torch.

The comparison with transformers runs where transformers imports; under ``pytest -p no_torch`` the tokenizer is
built with the ``tokenizers`` package alone and its ids, mask and truncation are checked against the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizer_cases import UNIGRAM_LENGTH, UNIGRAM_PROMPTS, unigram_json_tokenizer

from turbo_edge.spec.tokenizer import ClipTokenizer
from turbo_edge.spec.unigram import UnigramTokenizer, load_tokenizer, tokenizer_model_type


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="transformers writes the tokenizer (this run blocks it: pytest -p no_torch)")
    return unigram_json_tokenizer(tmp_path_factory.mktemp("t5") / "tokenizer")


@pytest.mark.parametrize("text", UNIGRAM_PROMPTS)
def test_ids_and_mask_equal_transformers(t5_dir: Path, text: str) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(t5_dir)
    ref = hf(text, padding="max_length", max_length=UNIGRAM_LENGTH, truncation=True, return_attention_mask=True)
    ours = load_tokenizer(t5_dir, UNIGRAM_LENGTH).encode(text)
    assert ours.ids == ref.input_ids
    assert ours.mask == ref.attention_mask
    assert ours.truncated == (len(hf(text).input_ids) > UNIGRAM_LENGTH)


def test_the_shared_cases_exercise_truncation_unknowns_and_padding(t5_dir: Path) -> None:
    tok = UnigramTokenizer.from_dir(t5_dir)
    assert tok.max_length == UNIGRAM_LENGTH  # tokenizer_config.json's model_max_length
    enc = {t: tok.encode(t) for t in UNIGRAM_PROMPTS}
    long = enc["purple " * 30]
    assert long.truncated and long.ids[-1] == 1 and sum(long.mask) == UNIGRAM_LENGTH  # cut, closing </s> kept
    assert enc[""].ids[:2] == [1, 0] and sum(enc[""].mask) == 1  # the unconditional prompt: </s>, then padding
    assert "你好" in enc["héllo wörld — 你好 🎉 café"].unknown_words  # characters outside the vocabulary: <unk>
    assert len([i for i, m in zip(enc["zebra"].ids, enc["zebra"].mask) if m]) > 2  # an unseen word: several pieces


def test_the_loader_picks_the_tokenizer_by_its_model_type(t5_dir: Path, tmp_path: Path) -> None:
    from turbo_edge.spec.tokenizer_files import write_tokenizer

    assert tokenizer_model_type(t5_dir) == "Unigram"
    assert isinstance(load_tokenizer(t5_dir, 16), UnigramTokenizer)
    clip = write_tokenizer(tmp_path / "clip", ["red", "circle"], 8)
    assert tokenizer_model_type(clip) is None and isinstance(load_tokenizer(clip, 8), ClipTokenizer)


# ------------------------------------------------------------------ torch-free: the tokenizers package alone


def _tokenizers_only(path: Path) -> Path:
    """A T5-style tokenizer.json written by the tokenizers package (no transformers): 3 specials, 4 words, letters."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁a", -2.0), ("▁red", -2.0), ("▁circle", -2.0), ("▁left", -2.0), ("▁", -5.0)]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    path.mkdir(parents=True)
    tok.save(str(path / "tokenizer.json"))
    return path


def test_without_transformers_ids_mask_and_truncation_follow_the_vocabulary(tmp_path: Path) -> None:
    tok = load_tokenizer(_tokenizers_only(tmp_path / "tok"), 8)
    assert isinstance(tok, UnigramTokenizer)
    enc = tok.encode("a red circle")
    assert enc.ids == [3, 4, 5, 1, 0, 0, 0, 0] and enc.mask == [1, 1, 1, 1, 0, 0, 0, 0] and not enc.truncated
    long = tok.encode("red " * 10)
    assert long.ids == [4] * 7 + [1] and long.mask == [1] * 8 and long.truncated
    odd = tok.encode("a é")
    assert odd.ids[:4] == [3, 7, 2, 1] and odd.unknown_words == ["é"]  # ▁a, ▁, <unk>, </s>


def test_a_tokenizer_json_the_library_cannot_read_is_one_line(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "tokenizer.json").write_text('{"model": {"type": "Unigram", "vocab": "not a list"}}')
    with pytest.raises(ValueError, match="is not a tokenizer.json the tokenizers package reads") as info:
        UnigramTokenizer.from_dir(d, 8)
    assert "\n" not in str(info.value)
