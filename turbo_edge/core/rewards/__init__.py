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

from turbo_edge.core.rewards.base import ASSET_DIR, RewardConfig, RewardModel, save_reward
from turbo_edge.core.rewards.registry import REWARDS, load_reward, reward_class

__all__ = ["ASSET_DIR", "REWARDS", "RewardConfig", "RewardModel", "load_reward", "reward_class", "save_reward"]
