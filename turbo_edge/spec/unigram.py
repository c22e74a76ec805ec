"""The T5 / UMT5 Unigram tokenizer (Wan's text encoder), read from ``tokenizer.json`` by the ``tokenizers`` package.

Why a library and not a hand-written tokenizer (``docs/decisions.md``, "Runtime: the Unigram tokenizer through
``tokenizers``"): a Unigram model is a Viterbi search over the vocabulary's log-probabilities after a normaliser (a
SentencePiece precompiled character map for real T5 / UMT5 tokenizers) and a Metaspace pre-tokeniser; ``tokenizers``
is the very code transformers 5 runs for these tokenizers, it is a Rust wheel with no torch, and it reads the file
as transformers wrote it. What this module adds is what ``transformers``' ``__call__`` does around it for
``UMT5Text.tokenize``: truncate to the model's length keeping the closing ``</s>``, pad with ``<pad>`` to that length,
and the attention mask (1 for the prompt and its ``</s>``, 0 for padding).
"""

from __future__ import annotations

import json
from pathlib import Path

from turbo_edge.spec.tokenizer import TOKENIZER_JSON, ClipTokenizer, Encoding


def tokenizer_model_type(directory: str | Path) -> str | None:
    """The ``model.type`` of a directory's ``tokenizer.json`` ("BPE", "Unigram", ...), or None without one."""
    path = Path(directory) / TOKENIZER_JSON
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); save the tokenizer again") from None
    model = spec.get("model") if isinstance(spec, dict) else None
    return model.get("type") if isinstance(model, dict) else None


class UnigramTokenizer:
    """Fixed-length ids and attention mask for one prompt, as transformers' T5 tokenizer gives them with
    ``padding="max_length", truncation=True, max_length=L`` (``core.text_encoders.UMT5Text.tokenize``)."""

    def __init__(self, path: str | Path, max_length: int) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError("a Unigram (T5 / UMT5) tokenizer needs the tokenizers package: pip install tokenizers") from None
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        path = Path(path)
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library's own parse error, as one line
            raise ValueError(f"{path} is not a tokenizer.json the tokenizers package reads ({str(exc).splitlines()[0][:160]}); save the tokenizer again") from None
        self.max_length = int(max_length)
        self.pad_id = self._special_id(("<pad>",), path)
        self.unk_id = self._tok.token_to_id("<unk>")
        # The library's own truncation (room kept for the post-processor's </s>) and padding, as transformers asks for them.
        self._tok.enable_truncation(max_length=self.max_length)
        self._tok.enable_padding(length=self.max_length, pad_id=self.pad_id, pad_token="<pad>")

    def _special_id(self, names: tuple[str, ...], path: Path) -> int:
        for name in names:
            i = self._tok.token_to_id(name)
            if i is not None:
                return int(i)
        raise ValueError(f"{path} has no {names[0]} token: it is not a T5 / UMT5 tokenizer")

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int | None = None) -> UnigramTokenizer:
        d = Path(directory)
        if max_length is None:
            cfg_path = d / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            max_length = int(cfg.get("model_max_length", 512))
        return cls(d / TOKENIZER_JSON, max_length)

    def encode(self, text: str) -> Encoding:
        enc = self._tok.encode(text)
        unknown = [tok for tok, i in zip(enc.tokens, enc.ids) if self.unk_id is not None and i == self.unk_id]
        return Encoding(ids=list(enc.ids), truncated=bool(enc.overflowing), unknown_words=unknown, mask=list(enc.attention_mask))


def load_tokenizer(directory: str | Path, max_length: int) -> ClipTokenizer | UnigramTokenizer:
    """The runtime tokenizer a bundle's ``tokenizer/`` holds: Unigram (T5 / UMT5) or CLIP's BPE."""
    if tokenizer_model_type(directory) == "Unigram":
        return UnigramTokenizer.from_dir(directory, max_length=max_length)
    return ClipTokenizer.from_dir(directory, max_length=max_length)
