"""CLIP byte-level BPE in plain Python, reading a tokenizer directory as transformers writes it.

The BPE comes from ``vocab.json`` + ``merges.txt`` when both are there (transformers 4, the slow tokenizer),
else from ``tokenizer.json`` (transformers 5 writes only that): its ``model.vocab`` and ``model.merges``, each
merge an ``"a b"`` string or an ``["a", "b"]`` pair. ``bpe_files`` is that rule; the exporter copies, and
``check_layout`` requires, the files it names.

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
BPE_PAIR = ("vocab.json", "merges.txt")
TOKENIZER_JSON = "tokenizer.json"
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


def bpe_files(directory: str | Path) -> tuple[str, ...]:
    """The files a directory's BPE is read from: ``vocab.json`` + ``merges.txt`` if both exist, else ``tokenizer.json``."""
    d = Path(directory)
    if all((d / name).is_file() for name in BPE_PAIR):
        return BPE_PAIR
    if (d / TOKENIZER_JSON).is_file():
        return (TOKENIZER_JSON,)
    raise FileNotFoundError(f"{d} holds neither tokenizer.json nor vocab.json + merges.txt; save a CLIP tokenizer there "
                            "(tokenizer.save_pretrained)")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); save the tokenizer again") from None


def _merge_pair(path: Path, merge: object) -> tuple[str, str]:
    parts = merge.split() if isinstance(merge, str) else merge
    if not isinstance(parts, list | tuple) or len(parts) != 2 or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"{path}: merge {merge!r} is neither an \"a b\" string nor an [a, b] pair; save the tokenizer again")
    return parts[0], parts[1]


def read_bpe(directory: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A directory's BPE vocabulary and merges, in merge-rank order (the files ``bpe_files`` names)."""
    d = Path(directory)
    if bpe_files(d) == BPE_PAIR:
        vocab = _read_json(d / "vocab.json")
        lines = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
        return vocab, [_merge_pair(d / "merges.txt", line) for line in lines if line and not line.startswith("#version")]  # type: ignore[return-value]
    path = d / TOKENIZER_JSON
    spec = _read_json(path)
    model = spec.get("model") if isinstance(spec, dict) else None
    kind = model.get("type") if isinstance(model, dict) else None
    if kind != "BPE":
        raise ValueError(f"{path} holds a {kind!r} tokenizer model, not a BPE one; turbo-edge needs a CLIP BPE tokenizer")
    if not isinstance(model.get("vocab"), dict) or not isinstance(model.get("merges"), list):
        raise ValueError(f"{path}'s BPE model lacks its vocab (an object) or merges (a list); save the tokenizer again")
    if model.get("end_of_word_suffix", EOW) != EOW:
        raise ValueError(f"{path}'s BPE ends words with {model['end_of_word_suffix']!r}, not CLIP's {EOW!r}; turbo-edge "
                         "needs a CLIP BPE tokenizer")
    vocab = dict(model["vocab"])
    for token in spec.get("added_tokens", []):  # the special tokens, which some writers keep out of model.vocab
        vocab.setdefault(token["content"], token["id"])
    return vocab, [_merge_pair(path, m) for m in model["merges"]]


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
    mask: list[int] | None = None  # attention mask (1: a token of the prompt), for encoders that take one (UMT5)


class ClipTokenizer:
    """Tokenises to a fixed length: ``<|startoftext|> tokens <|endoftext|> pad...`` (pad = ``<|endoftext|>``)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int) -> None:
        if BOS not in vocab or EOS not in vocab:
            raise ValueError(f"the tokenizer vocabulary lacks {BOS} or {EOS}: it is not a CLIP tokenizer's")
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
        vocab, merges = read_bpe(d)
        if max_length is None:
            cfg_path = d / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            max_length = int(cfg.get("model_max_length", 77))
        return cls(vocab, merges, max_length)

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
