"""Block importance: what removing each unit costs in per-frame content and in motion, measured without retraining.

A removal is simulated by swapping the unit's modules for parameter-free pass-throughs (``simulate_removal``):
a down layer returns its input, an up layer returns its hidden-state input and drops its skip, the mid block is
``None``. For a plan unit (a down layer with its up partner) this is exactly what ``plan.apply_plan`` builds
(tests check equality), so the table predicts the surgery. Costs compare the student's consistency output (its
single-step x0) with and without the unit, on noised synthetic-world latents at the sampler's own timesteps:

- ``content_cost``: per-frame latent MSE / variance of the unpruned x0 (individual-frame content);
- ``motion_cost``: MSE of frame-to-frame deltas / their variance (motion dynamics).

VDMini's finding to test: shallow blocks carry per-frame content, deep blocks carry motion, i.e. the
motion / content ratio grows with depth.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from turbo_edge.core import replay
from turbo_edge.core.consistency import consistency_output
from turbo_edge.core.denoiser import call_denoiser, family_of
from turbo_edge.spec import param
from turbo_edge.spec import plan as plans
from turbo_edge.spec.sampler import SamplerSpec


class _PassThrough(nn.Module):
    """Stands in for a removed module: returns its first input (its first ``channels``), as a 1-tuple if asked."""

    def __init__(self, channels: int | None = None, as_tuple: bool = False) -> None:
        super().__init__()
        self.channels, self.as_tuple = channels, as_tuple

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = hidden if self.channels is None else hidden[:, : self.channels]
        return (out,) if self.as_tuple else out


def _swap_layer(block: nn.Module, index: int, up: bool, saved: list[tuple[nn.ModuleList, int, nn.Module]]) -> None:
    for attr in ("resnets", "temp_convs", "attentions", "temp_attentions"):
        modules = getattr(block, attr, None)
        if modules is None:
            continue
        old = modules[index]
        if attr == "resnets":
            # An up resnet sees cat([hidden, skip]); hidden comes first and has out_channels channels.
            new = _PassThrough(old.out_channels if up else None)
        else:
            new = _PassThrough(as_tuple=attr.endswith("attentions"))
        saved.append((modules, index, old))
        modules[index] = new


def components(config: dict[str, Any], unit: str) -> list[str]:
    """The component names a plan unit removes: a down layer and its up partner, or a mid-block part."""
    if unit.startswith("down_blocks."):
        k, i = (int(p) for p in unit.split(".")[1::2])
        j, m = plans.up_partner(config, k, i)
        return [unit, f"up_blocks.{j}.layers.{m}"]
    return [unit]


@contextlib.contextmanager
def simulate_removal(unet: nn.Module, names: list[str]) -> Iterator[nn.Module]:
    """Temporarily replace the named components (``down_blocks.K.layers.I``, ``up_blocks.J.layers.M``,
    ``mid_block.layers.1``, ``mid_block``) by pass-throughs; restores the modules on exit."""
    saved: list[tuple[nn.ModuleList, int, nn.Module]] = []
    mid = unet.mid_block
    try:
        for name in names:
            parts = name.split(".")
            if name == plans.MID_WHOLE:
                unet.mid_block = None
            elif name == plans.MID_PAIR:
                for modules, idx in ((mid.attentions, 0), (mid.temp_attentions, 0), (mid.resnets, 1), (mid.temp_convs, 1)):
                    saved.append((modules, idx, modules[idx]))
                    modules[idx] = _PassThrough(as_tuple=modules is mid.attentions or modules is mid.temp_attentions)
            elif parts[0] in ("down_blocks", "up_blocks") and len(parts) == 4 and parts[2] == "layers":
                blocks = unet.down_blocks if parts[0] == "down_blocks" else unet.up_blocks
                _swap_layer(blocks[int(parts[1])], int(parts[3]), parts[0] == "up_blocks", saved)
            else:
                raise ValueError(f"unknown component {name!r}")
        yield unet
    finally:
        for modules, idx, old in reversed(saved):
            modules[idx] = old
        unet.mid_block = mid


def _level(config: dict[str, Any], name: str) -> int:
    """Resolution level, 0 = shallowest (full resolution); the mid block sits one below the deepest level."""
    levels = len(config["block_out_channels"])
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return levels - 1 - int(parts[1])
    return levels


def _params(unet: nn.Module, names: list[str]) -> int:
    before = sum(p.numel() for p in unet.parameters())
    with simulate_removal(unet, names):
        after = sum(p.numel() for p in unet.parameters())
    return before - after


def clip_costs(x0: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(content, motion) cost of x0 [B, C, F, h, w] against ref: relative per-frame MSE, relative delta MSE."""
    content = ((x0 - ref).square().mean() / ref.var().clamp_min(1e-12)).item()
    d, dref = x0.diff(dim=2), ref.diff(dim=2)
    motion = ((d - dref).square().mean() / dref.var().clamp_min(1e-12)).item()
    return content, motion


@torch.no_grad()
def measure_importance(
    unet: nn.Module, sampler: SamplerSpec, scheduler_config: dict[str, Any], latents: torch.Tensor, cond: torch.Tensor,
    guidance: float, seed: int = 0, steps: int = 4,
) -> dict[str, Any]:
    """The importance table of ``unet`` (a consistency student) on clean latents [B, C, F, h, w] with text ``cond``.

    Costs average over the ``steps``-step sampler's timesteps, each with its own seeded noise.
    """
    unet.eval()
    config = replay.base_config(unet)
    abar = param.alphas_cumprod(scheduler_config)
    timesteps = [int(t) for t in sampler.timesteps[steps]]
    b = latents.shape[0]
    w_emb = torch.from_numpy(param.guidance_embedding(np.full(b, guidance), int(sampler.w_embedding_dim))).float()
    kw = dict(prediction_type=sampler.prediction_type, timestep_scaling=sampler.timestep_scaling, sigma_data=sampler.sigma_data)
    inputs = []
    for n, t in enumerate(timesteps):
        tt = np.full(b, t, dtype=np.int64)
        eps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 1000 + n))
        alpha, sigma = (torch.as_tensor(v, dtype=torch.float32) for v in param.alpha_sigma(abar[tt]))
        inputs.append((tt, param.add_noise(latents, eps, alpha, sigma)))

    def run() -> list[torch.Tensor]:
        return [
            consistency_output(call_denoiser(unet, x, torch.from_numpy(tt), cond, w_emb), x, tt, abar, **kw)
            for tt, x in inputs
        ]

    refs = run()

    def cost(names: list[str]) -> dict[str, float]:
        with simulate_removal(unet, names):
            outs = run()
        pairs = [clip_costs(o, r) for o, r in zip(outs, refs)]
        content, motion = float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
        return {"content_cost": content, "motion_cost": motion, "motion_share": motion / (content + motion + 1e-12)}

    rows = []
    for unit in family_of(unet).removable_units(config):
        parts = components(config, unit)
        row: dict[str, Any] = {"name": unit, "level": _level(config, unit), "params": _params(unet, parts), **cost(parts)}
        if len(parts) > 1:
            row["components"] = {c: {"level": _level(config, c), "params": _params(unet, [c]), **cost([c])} for c in parts}
        rows.append(row)
    return {
        "kind": "importance_table",
        "version": 1,
        "architecture_hash": plans.architecture_hash(config),
        "timesteps": timesteps,
        "guidance": guidance,
        "clips": b,
        "units": rows,
        "by_level": _by_level(rows),
    }


def _by_level(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-level means over the single components (down layers, up layers, mid parts): the VDMini finding's test."""
    flat: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        for comp in row.get("components", {row["name"]: row}).values():
            flat.setdefault(comp["level"], []).append(comp)
    return [
        {
            "level": lvl,
            "components": len(items),
            "content_cost": float(np.mean([c["content_cost"] for c in items])),
            "motion_cost": float(np.mean([c["motion_cost"] for c in items])),
            "motion_share": float(np.mean([c["motion_share"] for c in items])),
        }
        for lvl, items in sorted(flat.items())
    ]


def to_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"# Block importance (timesteps {table['timesteps']}, guidance {table['guidance']}, {table['clips']} clips)",
        "",
        "| unit / component | level | params | content cost | motion cost | motion share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in table["units"]:
        lines.append(f"| **{row['name']}** | {row['level']} | {row['params']} | {row['content_cost']:.4f} | {row['motion_cost']:.4f} | {row['motion_share']:.3f} |")
        for name, c in row.get("components", {}).items():
            lines.append(f"| &nbsp;&nbsp;{name} | {c['level']} | {c['params']} | {c['content_cost']:.4f} | {c['motion_cost']:.4f} | {c['motion_share']:.3f} |")
    lines += ["", "| level | components | mean content cost | mean motion cost | mean motion share |", "|---:|---:|---:|---:|---:|"]
    for lv in table["by_level"]:
        lines.append(f"| {lv['level']} | {lv['components']} | {lv['content_cost']:.4f} | {lv['motion_cost']:.4f} | {lv['motion_share']:.3f} |")
    return "\n".join(lines) + "\n"


def write_table(table: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``importance.json`` and ``importance.md`` into ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "importance.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "importance.md").write_text(to_markdown(table))
    return out / "importance.json"
