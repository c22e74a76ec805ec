"""Wrappers of real reward models from local transformers directories: CLIP (image-text), X-CLIP (video-text).

Pixels arrive in [-1, 1]; each wrapper resizes them bilinearly (differentiably) to the vision tower's
``image_size`` and normalises with the processor's mean / std (``preprocessor_config.json`` when present,
CLIP's otherwise). Weights load from safetensors only. The tokenizer is read from the directory itself or
its ``tokenizer/`` subfolder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from turbo_edge.core.rewards.base import RewardModel, check_safetensors_dir

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _HFReward(RewardModel):
    """Loads model + tokenizer, owns the pixel preprocessing and the tokenisation."""

    model_class = "CLIPModel"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import transformers

        d = Path(path)
        check_safetensors_dir(d, f"{self.model_class} reward")
        self.path = d
        self.model = getattr(transformers, self.model_class).from_pretrained(d, use_safetensors=True)
        tok_dir = d / "tokenizer" if (d / "tokenizer").is_dir() else d
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(tok_dir)
        vision = self.model.config.vision_config
        size = vision.image_size
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        mean, std = CLIP_MEAN, CLIP_STD
        pre = d / "preprocessor_config.json"
        if pre.is_file():
            meta = json.loads(pre.read_text())
            mean, std = tuple(meta.get("image_mean", mean)), tuple(meta.get("image_std", std))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> the vision tower's input, differentiably."""
        x = F.interpolate(frames, size=self.image_size, mode="bilinear", align_corners=False)
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def tokens(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.mean.device), "attention_mask": enc["attention_mask"].to(self.mean.device)}


class CLIPReward(_HFReward):
    """Image-text reward: ``logit_scale * cos(image_embeds, text_embeds)`` averaged over the K frames."""

    kind = "image"
    model_class = "CLIPModel"

    def forward(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.check_input(x, prompts)
        b, k = x.shape[:2]
        image = F.normalize(_pooled(self.model.get_image_features(pixel_values=self.pixels(x.flatten(0, 1)))), dim=-1)
        text = F.normalize(_pooled(self.model.get_text_features(**self.tokens(prompts))), dim=-1)
        cos = (image.reshape(b, k, -1) * text[:, None]).sum(-1).mean(1)
        return cos * self.model.logit_scale.exp()


class XCLIPReward(_HFReward):
    """Video-text reward: X-CLIP's ``logits_per_video`` for each clip against its own prompt (the diagonal; the
    text embedding is conditioned on the video by X-CLIP's prompt generator). Frames are strided to the
    model's ``num_frames`` (repeated when the clip is shorter)."""

    kind = "video"
    model_class = "XCLIPModel"

    def forward(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.check_input(x, prompts)
        b, f = x.shape[:2]
        n = int(self.model.config.vision_config.num_frames)
        idx = torch.linspace(0, f - 1, n).round().long().to(x.device)
        clip = x[:, idx]
        pixels = self.pixels(clip.flatten(0, 1)).reshape(b, n, 3, *self.image_size)
        out = self.model(pixel_values=pixels, **self.tokens(prompts))
        return out.logits_per_video.diagonal()
