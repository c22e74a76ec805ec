"""Write real CLIP BPE tokenizer files (``vocab.json`` + ``merges.txt``) for a closed set of words.

The layout follows OpenAI CLIP's: 256 byte-level symbols, the same 256 with the end-of-word suffix
``</w>``, then one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. Each world word is
built by a chain of left-to-right merges, so it encodes as a single token; any other word still encodes
(it falls back to shorter pieces, down to single bytes), which is what lets callers detect and report
words outside the model's vocabulary instead of silently mapping them to ``<unk>``. transformers 5 loads these
files and saves them again as ``tokenizer.json`` (the same vocabulary and merges); both forms are read by the runtimes.
"""

from __future__ import annotations

import json
from pathlib import Path

from turbo_edge.spec.tokenizer import BOS, EOS, EOW, bpe, bytes_to_unicode


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Add merges greedily: while a word encodes as several pieces, merge its first two pieces.

    A new merge gets the lowest priority, so it can never change how an earlier word already encodes
    (that word has no adjacent pairs left); each word therefore ends as exactly one token.
    """
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + EOW for s in symbols]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = bpe(word, ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab_list.append(pair[0] + pair[1])
            pieces = bpe(word, ranks)
    vocab_list += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def write_tokenizer(directory: str | Path, words: list[str], model_max_length: int = 16) -> Path:
    """Write a CLIPTokenizer directory loadable by ``CLIPTokenizer.from_pretrained``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges([w.lower() for w in words])
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return out
