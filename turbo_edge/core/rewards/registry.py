"""The reward registry: name -> loader, resolved lazily so naming a reward imports no model code.

``spec.configs.REWARD_NAMES`` lists the same names for torch-free config validation; a test keeps them equal.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from turbo_edge.core.rewards.base import ASSET_DIR, RewardModel, read_reward_dir

# name -> (kind, "module:Class"): "builtin" loads trained weights from a reward directory (default: the
# package's assets), "pretrained" wraps a local transformers model directory (a path is required).
REWARDS: dict[str, tuple[str, str]] = {
    "builtin-image": ("builtin", "turbo_edge.core.rewards.builtin:ImageTextReward"),
    "builtin-video": ("builtin", "turbo_edge.core.rewards.builtin:VideoTextReward"),
    "clip": ("pretrained", "turbo_edge.core.rewards.hf:CLIPReward"),
    "xclip": ("pretrained", "turbo_edge.core.rewards.hf:XCLIPReward"),
    "latent": ("builtin", "turbo_edge.core.rewards.latent:LatentReward"),
}


def reward_class(name: str) -> type[RewardModel]:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {sorted(REWARDS)}")
    module, attr = REWARDS[name][1].split(":")
    cls: Any = getattr(importlib.import_module(module), attr)
    return cls


def load_reward(name: str, path: str | None = None) -> RewardModel:
    """The frozen reward model ``name``; ``path`` overrides the builtin weights' directory (required for
    ``clip`` / ``xclip``)."""
    cls = reward_class(name)
    if REWARDS[name][0] == "pretrained":
        if not path:
            raise ValueError(f"reward {name!r} wraps a local transformers {cls.model_class} directory: give its path")
        return cls(path)
    cfg, state = read_reward_dir(Path(path) if path else ASSET_DIR / name, name)
    model = cls(cfg)
    model.load_state_dict(state)
    return model.freeze()
