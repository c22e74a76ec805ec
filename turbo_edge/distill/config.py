"""``DistillConfig``: everything a distillation run depends on, validated before any model loads."""

from __future__ import annotations

import dataclasses
from typing import Any

from turbo_edge.core.config import StageConfig
from turbo_edge.distill.rewards import REWARDS


@dataclasses.dataclass
class RewardTerm:
    """One reward in the loss: ``- weight * reward(x0 decoded)``, on ``frames`` frames (image) or strided (video)."""

    name: str
    weight: float
    path: str | None = None
    frames: int = 2

    def __post_init__(self) -> None:
        if self.name not in REWARDS:
            raise ValueError(f"unknown reward {self.name!r}; known rewards: {sorted(REWARDS)}")
        if not 0.0 <= self.weight <= 100.0:
            raise ValueError(f"reward {self.name!r} weight must be in [0, 100], got {self.weight}")
        if self.frames < 1:
            raise ValueError(f"reward {self.name!r} needs frames >= 1, got {self.frames}")


@dataclasses.dataclass
class DistillConfig(StageConfig):
    KIND = "distill"

    teacher: str = "builtin"
    out: str = "runs/student"
    seed: int = 0
    # Student.
    mode: str = "lora"  # "lora" (T2V-Turbo v1) or "full" (T2V-Turbo v2)
    lora_rank: int = 32
    w_embedding_dim: int = 32
    # Continue from a student distilled earlier from this teacher (a top-up run) instead of the teacher's UNet.
    init_student: str = ""
    # Consistency distillation.
    origin_steps: int = 50  # the teacher ODE solver's grid (DDIM over 50 timesteps)
    w_min: float = 2.0
    w_max: float = 5.0
    huber_c: float = 0.001
    target_ema: float = 0.0  # 0: the online student under no_grad is the target (T2V-Turbo); else an EMA decay
    timestep_scaling: float = 10.0
    sigma_data: float = 0.5
    # Rewards on the single-step x0.
    rewards: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Motion guidance (T2V-Turbo-v2): strength 0 disables it.
    motion_guidance: float = 0.0
    motion_fraction: float = 0.5  # guide the noisiest fraction of solver steps
    # Variational score distillation (DOLLAR): weight 0 disables it.
    vsd_weight: float = 0.0
    vsd_lora_rank: int = 16
    vsd_lr: float = 1e-4
    # Optimisation.
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-4
    temporal_lr_scale: float = 1.0  # T2V-Turbo-v2 trains temporal layers at a scaled rate in full mode
    grad_clip: float = 1.0
    dataset_clips: int = 4096
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 0
    # What the shipped student is sampled with.
    default_steps: int = 4
    default_guidance: float = 3.0

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        if self.mode == "lora" and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 in lora mode, got {self.lora_rank}")
        if not 0 < self.w_min <= self.w_max:
            raise ValueError(f"need 0 < w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        if self.w_embedding_dim < 2 or self.w_embedding_dim % 2:
            raise ValueError(f"w_embedding_dim must be even and >= 2, got {self.w_embedding_dim}")
        if not 0.0 <= self.target_ema < 1.0:
            raise ValueError(f"target_ema must be in [0, 1), got {self.target_ema}")
        if not 0.0 <= self.motion_fraction <= 1.0 or self.motion_guidance < 0:
            raise ValueError("motion_guidance must be >= 0 and motion_fraction in [0, 1]")
        if self.vsd_weight < 0 or self.huber_c <= 0:
            raise ValueError("vsd_weight must be >= 0 and huber_c > 0")
        for name in ("steps", "batch", "dataset_clips", "checkpoint_every", "origin_steps", "default_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.reward_terms()  # validates every reward entry

    def reward_terms(self) -> list[RewardTerm]:
        terms = []
        for entry in self.rewards:
            unknown = set(entry) - {f.name for f in dataclasses.fields(RewardTerm)}
            if unknown:
                raise ValueError(f"unknown reward keys {sorted(unknown)} in {entry}")
            terms.append(RewardTerm(**entry))
        return terms

    def training_hash_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not the step count)."""
        d = self.to_dict()
        for key in ("steps", "checkpoint_every", "log_every", "threads", "out"):
            d.pop(key)
        return d
