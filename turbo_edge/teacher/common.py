"""What both builtin teachers' trainers share: seeded per-step randomness, the progress bar, the EMA, the loss weight."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


def _step_rng(seed: int, step: int, rank: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank, stream])


def _torch_gen(seed: int, step: int, rank: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_step_rng(seed, step, rank, stream).integers(2**62)))


def _object_weight(frames: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weight: 1 on background, ``1 + weight`` where the pixel differs from the border colour."""
    border = torch.cat([frames[..., 0, :], frames[..., -1, :], frames[..., :, 0], frames[..., :, -1]], dim=-1)
    bg = border.median(dim=-1).values[..., None, None]
    is_object = ((frames - bg).abs().amax(dim=-3, keepdim=True) > 0.1).float()
    return 1.0 + weight * is_object


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def _accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


class _Progress:
    def __init__(self, total: int, start: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True)

    def update(self, **metrics: float) -> None:
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def warmup_ema(decay: float):
    """EMA whose decay ramps as (1 + n) / (10 + n) up to ``decay`` (n = updates so far): a plain 0.999 EMA started
    from random weights still carries 13 % of them after 2,000 steps."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(ema_params[0]):  # integer buffers (position ids) are copied
            torch._foreach_copy_(ema_params, params)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update
