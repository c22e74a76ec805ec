"""CLIP byte-level BPE in plain Python, reading a bundle's ``vocab.json`` and ``merges.txt``.

Matches ``transformers.CLIPTokenizer`` on the text it is given after its normalisation (NFC, whitespace
collapsed, lower-cased); the C++ runtime implements the same steps (``runtime/cpp/src/tokenizer.cpp``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
EOW = "</w>"
# CLIP's pre-tokenisation pattern with \p{L} / \p{N} spelled in the standard library's ``re`` terms.
_PATTERN = re.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
    re.UNICODE,
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map (printable bytes map to themselves)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


_BYTE_MAP = bytes_to_unicode()


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()


def words(text: str) -> list[str]:
    """Split normalised text into words as the user wrote them (CLIP's pre-tokenisation pattern)."""
    return _PATTERN.findall(normalize(text))


def byte_level(word: str) -> str:
    """A word's byte-level unicode form: the alphabet the BPE vocabulary is written in."""
    return "".join(_BYTE_MAP[b] for b in word.encode("utf-8"))


def pre_tokenize(text: str) -> list[str]:
    """Split normalised text into words, each as its byte-level unicode string."""
    return [byte_level(w) for w in words(text)]


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Merge the lowest-ranked adjacent pair until none is mergeable; the last symbol carries ``</w>``."""
    if not word:
        return []
    symbols = list(word[:-1]) + [word[-1] + EOW]
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        candidates = [(r, i) for r, i in pairs if r is not None]
        if not candidates:
            break
        best = min(candidates)[0]
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and ranks.get((symbols[i], symbols[i + 1])) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


@dataclass
class Encoding:
    ids: list[int]
    truncated: bool  # the prompt had more tokens than fit; the tail was dropped
    unknown_words: list[str]  # words that did not encode as one whole-word token


class ClipTokenizer:
    """Tokenises to a fixed length: ``<|startoftext|> tokens <|endoftext|> pad...`` (pad = ``<|endoftext|>``)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int) -> None:
        if BOS not in vocab or EOS not in vocab:
            raise ValueError(f"vocab.json lacks {BOS} or {EOS}: not a CLIP tokenizer vocabulary")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.max_length = max_length
        self.bos_id, self.eos_id = vocab[BOS], vocab[EOS]
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int | None = None) -> ClipTokenizer:
        d = Path(directory)
        for name in ("vocab.json", "merges.txt"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"tokenizer file {d / name} is missing; a CLIP tokenizer needs vocab.json and merges.txt")
        vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        lines = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        if max_length is None:
            cfg_path = d / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            max_length = int(cfg.get("model_max_length", 77))
        return cls(vocab, merges, max_length)  # type: ignore[arg-type]

    def word_tokens(self, word: str) -> list[str]:
        if word not in self._cache:
            self._cache[word] = bpe(word, self.ranks)
        return self._cache[word]

    def encode(self, text: str) -> Encoding:
        ids: list[int] = []
        unknown: list[str] = []
        for word in pre_tokenize(text):
            pieces = self.word_tokens(word)
            if len(pieces) != 1:
                unknown.append(word)
            ids.extend(self.vocab.get(p, self.eos_id) for p in pieces)
        room = self.max_length - 2
        truncated = len(ids) > room
        ids = [self.bos_id, *ids[:room], self.eos_id]
        ids += [self.eos_id] * (self.max_length - len(ids))
        return Encoding(ids=ids, truncated=truncated, unknown_words=unknown)
