"""VDMini's recovery losses: Individual Content Distillation (ICD) and Multi-frame Content Adversarial (MCA).

Both compare the pruned student with the unpruned one at *matched layers*. A UNet: the output of every down and up
block (block surgery removes layers inside blocks only, so every block keeps its channel count and resolution and
the features line up one to one); UNet3D runs frames as batch entries ([B*F, C, H, W]), so an L2 over these features
is a per-frame (individual content) match. A DiT: the output of every block the plan keeps, matched with the same
block of the unpruned model; its tokens [B, f*h*w, D] are unpatchified to per-frame maps [B*f, D, h, w] (the tap's
``grid``), so the same losses and discriminator apply. The discriminator regroups frames into clips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def matched_layers(unet: nn.Module) -> list[str]:
    """Module names whose outputs ICD matches: every down block, then every up block."""
    return [f"down_blocks.{k}" for k in range(len(unet.down_blocks))] + [f"up_blocks.{j}" for j in range(len(unet.up_blocks))]


def matched_pairs(reference: nn.Module, plan: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """key -> (module name in the unpruned model, module name in the pruned one) for every matched layer. A UNet's
    names agree; a DiT's kept block ``blocks.i`` is ``blocks.j`` in the pruned model (j: its rank among the kept)."""
    if hasattr(reference, "blocks") and not hasattr(reference, "down_blocks"):
        removed = set(plan["removed"]) if plan else set()
        kept = [i for i in range(len(reference.blocks)) if f"blocks.{i}" not in removed]
        return {f"blocks.{i}": (f"blocks.{i}", f"blocks.{j}") for j, i in enumerate(kept)}
    return {name: (name, name) for name in matched_layers(reference)}


class FeatureTap:
    """Forward hooks that keep the latest output ([B*F, C, H, W]) of each named submodule (``names``: a list, or a dict
    key -> module name). A DiT block's tokens [B, f*h*w, D] are unpatchified to [B*f, D, h, w] with ``grid`` (f, h, w),
    which the caller sets before each forward pass."""

    def __init__(self, unet: nn.Module, names: list[str] | dict[str, str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self.grid: tuple[int, int, int] | None = None
        modules = dict(unet.named_modules())
        named = names if isinstance(names, dict) else {n: n for n in names}
        self._handles = [modules[name].register_forward_hook(self._hook(key)) for key, name in named.items()]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            # Down blocks return (hidden_states, skips); the hidden state is the block's feature.
            out = output[0] if isinstance(output, tuple) else output
            if out.ndim == 3:  # DiT tokens
                if self.grid is None:
                    raise RuntimeError("a DiT feature tap needs its token grid (f, h, w) set before the forward pass")
                f, h, w = self.grid
                b, n, d = out.shape
                if n != f * h * w:
                    raise RuntimeError(f"the tap's grid {self.grid} has {f * h * w} tokens, the block output {n}")
                out = out.reshape(b, f, h, w, d).permute(0, 1, 4, 2, 3).reshape(b * f, d, h, w)
            self.features[name] = out

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def icd_loss(pruned: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over matched layers of the per-frame feature MSE (VDMini's L2; the reference carries no gradient)."""
    terms = [F.mse_loss(pruned[name].float(), reference[name].detach().float()) for name in reference]
    return torch.stack(terms).mean()


class MultiFrameDiscriminator(nn.Module):
    """Hinge discriminator over a clip's features: a spatial head judges each frame, a temporal head judges
    3-frame windows (Conv3d over time and space), so it can tell frame content and motion apart."""

    def __init__(self, channels: int, width: int = 64) -> None:
        super().__init__()
        groups = 8 if width % 8 == 0 else 1
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, 1, 1)
        )
        self.temporal = nn.Sequential(
            nn.Conv3d(channels, width, (3, 3, 3), padding=(0, 1, 1)), nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv3d(width, 1, 1)
        )

    def forward(self, features: torch.Tensor, frames: int) -> torch.Tensor:
        """features [B*F, C, H, W] -> logits [B, N] (spatial patch logits of every frame, then temporal ones)."""
        bf, c, h, w = features.shape
        spatial = self.spatial(features).reshape(bf // frames, -1)
        clips = features.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)
        if frames >= 3:
            temporal = self.temporal(clips).flatten(1)
        else:  # too few frames for a 3-frame window: judge the frame differences spatially instead
            temporal = self.spatial(clips.diff(dim=2).permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)).reshape(bf // frames, -1)
        return torch.cat([spatial, temporal], dim=1)


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
