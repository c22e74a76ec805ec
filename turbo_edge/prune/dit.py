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
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from turbo_edge.core import replay
from turbo_edge.core.consistency import consistency_output
from turbo_edge.core.denoiser import base_module, call_denoiser, family_of
from turbo_edge.prune.importance import clip_costs
from turbo_edge.spec import param
from turbo_edge.spec import plan as plans
from turbo_edge.spec.sampler import SamplerSpec


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


def _table(transformer: nn.Module, run: Callable[[], list[torch.Tensor]], clips: int, **header: Any) -> dict[str, Any]:
    """One row per block: the costs of ``run()``'s outputs with the block passed through, against ``run()`` intact."""
    base = base_module(transformer)
    config = replay.base_config(base)
    refs = run()
    rows = []
    for depth, unit in enumerate(family_of(transformer).removable_units(config)):
        with simulate_removal(transformer, [unit]):
            pairs = [clip_costs(o, r) for o, r in zip(run(), refs)]
        content, motion = float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
        params = sum(p.numel() for p in base.blocks[depth].parameters())
        rows.append({"name": unit, "level": depth, "params": params, "content_cost": content, "motion_cost": motion,
                     "motion_share": motion / (content + motion + 1e-12)})
    return {"kind": "importance_table", "version": 1, "family": "wan", "architecture_hash": plans.architecture_hash(config),
            **header, "clips": clips, "units": rows, "by_level": [{"level": r["level"], "components": 1, "content_cost": r["content_cost"],
            "motion_cost": r["motion_cost"], "motion_share": r["motion_share"]} for r in rows]}


@torch.no_grad()
def measure_importance(transformer: nn.Module, latents: torch.Tensor, cond: torch.Tensor, sigmas: list[float],
                       seed: int = 0, guidance: torch.Tensor | None = None) -> dict[str, Any]:
    """The importance table of a flow-matching ``transformer`` (a teacher) on clean latents [B, C, f, h, w] with text
    ``cond``: its x0 prediction, averaged over ``sigmas`` (each with its own seeded noise)."""
    transformer.eval()
    inputs = []
    for n, s in enumerate(sigmas):
        eps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 1000 + n))
        sig = torch.full((latents.shape[0],), float(s))
        inputs.append((sig, param.flow_add_noise(latents, eps, sig)))

    def run() -> list[torch.Tensor]:
        return [param.flow_to_x0_eps(call_denoiser(transformer, x, sig * 1000.0, cond, guidance), x, sig)[0] for sig, x in inputs]

    return _table(transformer, run, int(latents.shape[0]), sigmas=[float(s) for s in sigmas])


def student_inputs(sampler: SamplerSpec, sched: param.NoiseSchedule, latents: torch.Tensor, guidance: float, seed: int = 0,
                   steps: int = 4) -> tuple[torch.Tensor, list[tuple[np.ndarray, torch.Tensor]]]:
    """A consistency student's inputs at the ``steps``-step sampler's timesteps: its guidance embedding and, per timestep,
    (the timestep indices, the clean ``latents`` noised with that timestep's own seeded noise)."""
    timesteps = [int(t) for t in sampler.timesteps[steps]]
    b = latents.shape[0]
    w_emb = torch.from_numpy(param.guidance_embedding(np.full(b, guidance), int(sampler.w_embedding_dim))).float()
    inputs = []
    for n, t in enumerate(timesteps):
        tt = np.full(b, t, dtype=np.int64)
        eps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 1000 + n))
        alpha, sigma = (torch.as_tensor(v, dtype=torch.float32) for v in sched.alpha_sigma(tt))
        inputs.append((tt, param.add_noise(latents, eps, alpha, sigma)))
    return w_emb, inputs


def student_calls(sampler: SamplerSpec, sched: param.NoiseSchedule, latents: torch.Tensor, cond: torch.Tensor, guidance: float,
                  seed: int = 0, steps: int = 4) -> list[dict[str, Any]]:
    """``student_inputs`` as denoiser calls in the common signature (what a head / FFN plan is measured on)."""
    w_emb, inputs = student_inputs(sampler, sched, latents, guidance, seed, steps)
    return [{"sample": x, "timestep": torch.from_numpy(sched.model_timestep(tt)), "text": cond, "guidance": w_emb} for tt, x in inputs]


@torch.no_grad()
def measure_student_importance(transformer: nn.Module, sampler: SamplerSpec, sched: param.NoiseSchedule, latents: torch.Tensor,
                               cond: torch.Tensor, guidance: float, seed: int = 0, steps: int = 4) -> dict[str, Any]:
    """The importance table of a consistency student's transformer: its consistency output (the single-step x0 its
    sampler uses) at the ``steps``-step sampler's timesteps, each with its own seeded noise (``prune.importance``'s
    measurement for a UNet, with blocks for units)."""
    transformer.eval()
    w_emb, inputs = student_inputs(sampler, sched, latents, guidance, seed, steps)

    def run() -> list[torch.Tensor]:
        return [consistency_output(call_denoiser(transformer, x, torch.from_numpy(sched.model_timestep(tt)), cond, w_emb), x, tt, sched,
                                   sampler.prediction_type, sampler.timestep_scaling, sampler.sigma_data) for tt, x in inputs]

    return _table(transformer, run, int(latents.shape[0]), timesteps=[int(t) for t in sampler.timesteps[steps]], guidance=guidance)
