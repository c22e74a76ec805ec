"""``PruneConfig``: everything a pruning run depends on, validated before any model loads."""

from __future__ import annotations

import dataclasses
from typing import Any

from turbo_edge.core.config import StageConfig

PLAN_RULES = ("vdmini", "lowest_cost", "none")  # "none": no block surgery (channel pruning alone)
CHANNEL_IMPORTANCES = ("magnitude", "l1", "random")  # channels.IMPORTANCES (kept here: configs import no torch)


@dataclasses.dataclass
class PruneConfig(StageConfig):
    KIND = "prune"

    student: str = "builtin-student"
    out: str = "runs/pruned"
    plan: str | None = None  # a pruning_plan.json to replay; None: make one with ``rule``
    rule: str = "vdmini"
    remove_count: int = 3  # units the "lowest_cost" rule removes (cheapest first in the importance table)
    # Channel pruning (torch-pruning) after the block plan: the fraction of each internal width removed, in whole
    # units (norm groups, heads, gated pairs); block output widths never change. 0 disables.
    channel_ratio: float = 0.0
    channel_importance: str = "magnitude"
    seed: int = 0
    # Importance table written beside the run (0 clips skips it unless the rule needs it).
    importance_clips: int = 8
    importance_steps: int = 4
    # Recovery training: the unpruned student teaches the pruned one.
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-4
    w_min: float = 2.0
    w_max: float = 5.0
    huber_c: float = 0.001
    icd_weight: float = 0.1  # Individual Content Distillation (per-frame feature L2); 0 disables
    mca_weight: float = 1.0  # Multi-frame Content Adversarial (hinge); 0 disables
    mca_up_block: int = -1  # which up block's output features the discriminator sees
    disc_width: int = 64
    disc_lr: float = 1e-4
    grad_clip: float = 1.0
    dataset_clips: int = 4096
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 0

    def __post_init__(self) -> None:
        if self.rule not in PLAN_RULES:
            raise ValueError(f"unknown pruning rule {self.rule!r}; known rules: {list(PLAN_RULES)}")
        if not 0 <= self.channel_ratio < 1:
            raise ValueError(f"channel_ratio must be in [0, 1) (0 disables channel pruning), got {self.channel_ratio}")
        if self.channel_importance not in CHANNEL_IMPORTANCES:
            raise ValueError(f"unknown channel importance {self.channel_importance!r}; known: {list(CHANNEL_IMPORTANCES)}")
        if self.rule == "none" and not self.plan and self.channel_ratio == 0:
            raise ValueError("rule 'none' removes no blocks: set channel_ratio > 0 (or give a plan), else nothing is pruned")
        if self.icd_weight < 0 or self.mca_weight < 0:
            raise ValueError(f"icd_weight and mca_weight must be >= 0 (0 disables), got {self.icd_weight}, {self.mca_weight}")
        if not 0 < self.w_min <= self.w_max:
            raise ValueError(f"need 0 < w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        if self.huber_c <= 0 or self.lr <= 0 or self.disc_lr <= 0:
            raise ValueError("huber_c, lr and disc_lr must be > 0")
        for name in ("steps", "batch", "dataset_clips", "checkpoint_every", "log_every", "importance_steps", "remove_count", "disc_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.importance_clips < 0 or self.importance_clips > self.dataset_clips:
            raise ValueError(f"importance_clips must be in [0, dataset_clips={self.dataset_clips}], got {self.importance_clips}")

    def training_hash_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not the step count)."""
        d = self.to_dict()
        for key in ("steps", "checkpoint_every", "log_every", "threads", "out", "importance_clips", "importance_steps"):
            d.pop(key)
        if self.channel_ratio == 0:  # off: the hash block-only checkpoints were written with before these fields
            d.pop("channel_ratio"), d.pop("channel_importance")
        return d
