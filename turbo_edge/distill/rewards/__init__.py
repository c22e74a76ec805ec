"""Reward models for reward-augmented consistency distillation, in a registry keyed by name.

``load_reward(name, path)`` is the one entry point:

- ``builtin-image`` — HPS/CLIP-like image-text reward trained on the synthetic world (``turbo_edge/assets/rewards``);
- ``builtin-video`` — InternVideo2/ViCLIP-like video-text reward trained on the synthetic world;
- ``clip`` — a local transformers ``CLIPModel`` directory (``path`` required);
- ``xclip`` — a local transformers ``XCLIPModel`` directory (``path`` required);
- ``latent`` — DOLLAR's latent reward model, trained for one VAE's latent space by ``train_latent_reward``.

Every reward is frozen and differentiable with respect to its input; see :class:`RewardModel` for the layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from turbo_edge.distill.rewards.base import ASSET_DIR, RewardConfig, RewardModel, read_reward_dir, save_reward
from turbo_edge.distill.rewards.builtin import ImageTextReward, VideoTextReward
from turbo_edge.distill.rewards.hf import CLIPReward, XCLIPReward
from turbo_edge.distill.rewards.latent import LatentReward, motion_direction_score, train_latent_reward

__all__ = [
    "ASSET_DIR",
    "REWARDS",
    "RewardConfig",
    "RewardModel",
    "load_reward",
    "motion_direction_score",
    "save_reward",
    "train_latent_reward",
]

BUILTIN_CLASSES: dict[str, type[RewardModel]] = {
    "builtin-image": ImageTextReward,
    "builtin-video": VideoTextReward,
    "latent": LatentReward,
}


def _builtin(name: str) -> Callable[[str | None], RewardModel]:
    def load(path: str | None = None) -> RewardModel:
        cfg, state = read_reward_dir(Path(path) if path else ASSET_DIR / name, name)
        model = BUILTIN_CLASSES[name](cfg)
        model.load_state_dict(state)
        return model.freeze()

    return load


def _pretrained(cls: type[RewardModel], name: str) -> Callable[[str | None], RewardModel]:
    def load(path: str | None = None) -> RewardModel:
        if not path:
            raise ValueError(f"reward {name!r} wraps a local transformers {cls.model_class} directory: give its path")
        return cls(path)

    return load


REWARDS: dict[str, Callable[[str | None], RewardModel]] = {
    "builtin-image": _builtin("builtin-image"),
    "builtin-video": _builtin("builtin-video"),
    "clip": _pretrained(CLIPReward, "clip"),
    "xclip": _pretrained(XCLIPReward, "xclip"),
    "latent": _builtin("latent"),
}


def load_reward(name: str, path: str | None = None) -> RewardModel:
    """The frozen reward model ``name``; ``path`` overrides the builtin weights' directory (required for
    ``clip`` / ``xclip``)."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {sorted(REWARDS)}")
    return REWARDS[name](path)
