"""VDMini block importance for a video DiT (the wan family): what removing each transformer block costs.

A DiT's removable unit is a whole block (``WanFamily.removable_units``: ``blocks.N``): every block maps tokens to
tokens of the same width, so a removed block is a pass-through, and ``simulate_removal`` (a forward hook returning the
block's input) computes exactly what ``WanFamily.apply_plan``'s surgery builds (``tests/prune/test_dit_importance.py``).
Costs compare the denoiser's x0 prediction with and without the block on noised latents at the flow schedule's
sigmas, split as for the UNet (``prune.importance.clip_costs``): ``content_cost`` (per-frame latent error) and
``motion_cost`` (error of frame-to-frame deltas), so VDMini's finding (shallow units carry content, deep ones motion)
can be tested on a DiT by block depth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from turbo_edge.core.denoiser import base_module, call_denoiser, family_of
from turbo_edge.prune.importance import clip_costs
from turbo_edge.spec import param


@contextlib.contextmanager
def simulate_removal(transformer: nn.Module, units: list[str]) -> Iterator[None]:
    """Within the context, each named block returns its input unchanged (a parameter-free pass-through)."""
    blocks = base_module(transformer).blocks
    handles = []
    for unit in units:
        index = int(unit.split(".")[1])
        handles.append(blocks[index].register_forward_hook(lambda _m, args, _out: args[0]))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def measure_importance(transformer: nn.Module, latents: torch.Tensor, cond: torch.Tensor, sigmas: list[float],
                       seed: int = 0, guidance: torch.Tensor | None = None) -> dict[str, Any]:
    """The importance table of a flow-matching ``transformer`` on clean latents [B, C, f, h, w] with text ``cond``,
    averaged over ``sigmas`` (each with its own seeded noise): one row per block, with its depth as its level."""
    transformer.eval()
    family = family_of(transformer)
    units = family.removable_units(dict(base_module(transformer).config))
    inputs = []
    for n, s in enumerate(sigmas):
        eps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 1000 + n))
        sig = torch.full((latents.shape[0],), float(s))
        inputs.append((sig, param.flow_add_noise(latents, eps, sig)))

    def run() -> list[torch.Tensor]:
        outs = []
        for sig, x in inputs:
            v = call_denoiser(transformer, x, sig * 1000.0, cond, guidance)
            outs.append(param.flow_to_x0_eps(v, x, sig)[0])
        return outs

    refs = run()
    rows = []
    for depth, unit in enumerate(units):
        with simulate_removal(transformer, [unit]):
            pairs = [clip_costs(o, r) for o, r in zip(run(), refs)]
        content, motion = float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
        params = sum(p.numel() for p in base_module(transformer).blocks[depth].parameters())
        rows.append({"name": unit, "level": depth, "params": params, "content_cost": content, "motion_cost": motion,
                     "motion_share": motion / (content + motion + 1e-12)})
    return {"kind": "importance_table", "version": 1, "family": "wan", "sigmas": [float(s) for s in sigmas],
            "clips": int(latents.shape[0]), "units": rows}
