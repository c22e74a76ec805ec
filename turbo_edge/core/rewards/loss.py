"""Reward terms on a model's single-step x0, shared by distillation and pruning recovery.

Image and video rewards see frames decoded (with gradients) through the model's frozen autoencoder; a latent
reward reads x0 itself. The loss is ``- sum(weight * mean reward)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from turbo_edge.core.rewards.registry import load_reward


class RewardLoss:
    """``terms``' reward models over ``model``'s autoencoder (a T2VModel: its VAE, components and lead-in)."""

    def __init__(self, model: Any, terms: list[Any]) -> None:
        self.model = model
        self.terms = [(term, load_reward(term.name, term.path)) for term in terms]

    def __bool__(self) -> bool:
        return bool(self.terms)

    def decode(self, latents_bcfhw: torch.Tensor, frame_idx: np.ndarray) -> torch.Tensor:
        """Decode chosen frames with gradients through the frozen autoencoder: [B, K, 3, H, W] in [-1, 1]. Frame
        indices count the clip's frames after the model's lead-in (a causal autoencoder's first frame)."""
        m = self.model
        return m.components.autoencoder.decode_frames(m.vae, latents_bcfhw, frame_idx + m.lead_in_frames).clamp(-1, 1)

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames a reward may pick from: the decoded clip's, less the lead-in."""
        geometry = self.model.components.autoencoder.geometry(self.model.vae)
        return geometry.pixel_frames(latent_frames) - self.model.lead_in_frames

    def __call__(self, x0: torch.Tensor, prompts: list[str], rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        frames = self.pixel_frames(x0.shape[2])
        total = x0.new_zeros(())
        metrics = {}
        for term, reward in self.terms:
            if reward.kind == "latent":
                r = reward(x0, prompts)
            elif reward.kind == "image":  # random frames
                idx = np.sort(rng.choice(frames, size=min(term.frames, frames), replace=False))
                r = reward(self.decode(x0, idx), prompts)
            else:  # video: evenly strided frames
                r = reward(self.decode(x0, np.linspace(0, frames - 1, min(term.frames, frames)).round().astype(int)), prompts)
            r = r.float()
            total = total - term.weight * r.mean()
            metrics[f"reward_{term.name}"] = r.mean().item()
        return total, metrics
