"""The text-encoder plug point: tokenizer, padded length, attention mask and embeddings, one class per kind.

- ``CLIPText``: transformers ``CLIPTextModel`` + ``CLIPTokenizer`` (BPE), padded to the position table; the whole
  last hidden state is the condition (no mask: the UNet3D text-to-video models attend to the padding too).
- ``UMT5Text``: transformers ``UMT5EncoderModel`` + a T5 tokenizer (a Unigram ``tokenizer.json``), as Wan2.1 uses
  it: padded to the model's length (Wan: 512) with an attention mask, and the embeddings past each prompt's length
  zeroed (compare WanPipeline._get_t5_prompt_embeds), so the denoiser sees exactly what Wan's pipeline gives it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

WAN_TEXT_LENGTH = 512  # WanPipeline's max_sequence_length


def masked_hidden_states(text_encoder: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state with the mask applied, and zero past each prompt's length."""
    hidden = text_encoder(ids, attention_mask=mask).last_hidden_state
    return hidden * mask.unsqueeze(-1).to(hidden.dtype)


class TextEncoderKind(ABC):
    name: ClassVar[str]
    transformers_class: ClassVar[str]
    tokenizer_classes: ClassVar[tuple[str, ...]]  # what model_index.json may name for the tokenizer

    @abstractmethod
    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module: ...

    @abstractmethod
    def load_tokenizer(self, path: str | os.PathLike[str]) -> Any: ...

    @abstractmethod
    def max_length(self, text_encoder: Any, tokenizer: Any) -> int: ...

    @abstractmethod
    def tokenize(self, text_encoder: Any, tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` (and ``attention_mask`` where the kind uses one) [B, L], padded to ``max_length``."""

    @abstractmethod
    def embed(self, text_encoder: Any, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token ids -> the denoiser's condition [B, L, D]."""

    @torch.no_grad()
    def encode(self, text_encoder: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
        return self.embed(text_encoder, self.tokenize(text_encoder, tokenizer, prompts))


class CLIPText(TextEncoderKind):
    name = "clip"
    transformers_class = "CLIPTextModel"
    tokenizer_classes = ("CLIPTokenizer", "CLIPTokenizerFast")

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module:
        from transformers import CLIPTextModel

        return CLIPTextModel.from_pretrained(path, use_safetensors=True, dtype=dtype)

    def load_tokenizer(self, path: str | os.PathLike[str]) -> Any:
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(path)

    def max_length(self, text_encoder: Any, tokenizer: Any) -> int:
        return min(int(tokenizer.model_max_length), int(text_encoder.config.max_position_embeddings))

    def tokenize(self, text_encoder: Any, tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
        ids = tokenizer(prompts, padding="max_length", max_length=self.max_length(text_encoder, tokenizer), truncation=True,
                        return_tensors="pt").input_ids
        return {"input_ids": ids}

    def embed(self, text_encoder: Any, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return text_encoder(tokens["input_ids"]).last_hidden_state


class UMT5Text(TextEncoderKind):
    name = "umt5"
    transformers_class = "UMT5EncoderModel"
    tokenizer_classes = ("T5Tokenizer", "T5TokenizerFast", "AutoTokenizer")

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module:
        from transformers import UMT5EncoderModel

        return UMT5EncoderModel.from_pretrained(path, use_safetensors=True, dtype=dtype)

    def load_tokenizer(self, path: str | os.PathLike[str]) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)

    def max_length(self, text_encoder: Any, tokenizer: Any) -> int:
        # A tokenizer without a length of its own (transformers' sentinel is ~1e30) takes Wan's 512.
        return min(int(tokenizer.model_max_length), WAN_TEXT_LENGTH)

    def tokenize(self, text_encoder: Any, tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
        out = tokenizer(prompts, padding="max_length", max_length=self.max_length(text_encoder, tokenizer), truncation=True,
                        add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        return {"input_ids": out.input_ids, "attention_mask": out.attention_mask}

    def embed(self, text_encoder: Any, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_hidden_states(text_encoder, tokens["input_ids"], tokens["attention_mask"])


TEXT_ENCODERS: dict[str, TextEncoderKind] = {k.transformers_class: k for k in (CLIPText(), UMT5Text())}


def text_encoder_for(class_name: str | None) -> TextEncoderKind:
    if class_name not in TEXT_ENCODERS:
        raise ValueError(f"text encoder {class_name!r} is not supported; turbo-edge handles {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[class_name]
