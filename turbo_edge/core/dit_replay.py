"""Replaying a DiT head / FFN plan on a ``WanTransformer3DModel``: index selects, the norm factors, the config widths.

A Wan block has three widths a plan may narrow, none of which the residual stream sees:

- self-attention (``attn1``) and cross-attention (``attn2``) heads: the kept heads' rows of ``to_q`` / ``to_k`` /
  ``to_v`` (with their biases), their slice of ``norm_q`` / ``norm_k``'s weight, and their columns of ``to_out.0``;
  ``heads`` / ``inner_dim`` / ``kv_inner_dim`` follow. The head width stays, so RoPE (per head, over its 128
  channels) and the softmax scale are what they were, and the attention processors need no change: the pruned module
  is exactly the ``WanAttention`` diffusers builds with ``heads=k, dim_head=d``;
- the feed-forward hidden width: the kept rows of ``ffn.net.0.proj`` and columns of ``ffn.net.2``.

Wan's q / k norm (``qk_norm="rms_norm_across_heads"``) is one ``RMSNorm`` over all heads' channels together, so the
statistic a kept head is divided by changes when other heads go: over H heads, ``rms_H(x) = sqrt(sum_all x^2 / (H d))``;
after pruning, ``rms_K(x) = sqrt(sum_kept x^2 / (K d))``. The plan carries, per attention, one factor per norm
(``norm_q_scale`` / ``norm_k_scale`` = c) that replay multiplies into the kept slice of the norm's weight, so the pruned
norm computes ``x w c / rms_K(x)``: equal to the unpruned ``x w / rms_H(x)`` wherever ``rms_K / rms_H`` is the same for
every token (exactly so when the removed heads' projections carry no energy; tested), and its least-squares fit over
the calibration tokens otherwise (``prune.dit_widths``). The architecture stays diffusers' own, so nothing but the
weights' values encodes the correction.

The widths left are written into the transformer's config (``spec.plan.WIDTH_KEY``), so a saved pruned transformer
describes itself: ``WanFamily.load`` builds the blocks at those widths (``set_block_widths``) and loads the weights
strictly; the plan file beside it is the replayable record (which heads, which channels, which factors) and is
checked against the config when both are present.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from turbo_edge.spec.errors import PlanError
from turbo_edge.spec.plan import WIDTH_KEY, check_block_widths, dit_base_config, head_ffn_widths, validate_head_ffn_plan


def base_config(module: nn.Module) -> dict[str, Any]:
    """The transformer's public config as plain JSON, without the widths a plan left: the architecture plans are made for."""
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    return dit_base_config(json.loads(json.dumps(config, default=list)))


def _check_attention(name: str, attn: nn.Module) -> None:
    if getattr(attn, "fused_projections", False):
        raise PlanError(f"{name} has fused q / k / v projections (fuse_projections()); unfuse them before pruning heads")
    if getattr(attn, "add_k_proj", None) is not None:
        raise PlanError(f"{name} has image conditioning (I2V: add_k_proj); head pruning handles text-to-video Wan only")
    for norm in ("norm_q", "norm_k"):
        if not isinstance(getattr(attn, norm, None), nn.RMSNorm):
            raise PlanError(f"{name}.{norm} is {type(getattr(attn, norm, None)).__name__}, not the RMSNorm across heads head pruning handles")


def _check_ffn(name: str, ffn: nn.Module) -> None:
    proj, out = getattr(ffn.net[0], "proj", None), ffn.net[2] if len(ffn.net) > 2 else None
    if not isinstance(proj, nn.Linear) or not isinstance(out, nn.Linear):
        raise PlanError(f"{name} is not FeedForward(Linear -> activation -> Linear); its hidden width cannot be pruned")


@torch.no_grad()
def _select(linear: nn.Linear, idx: torch.Tensor, dim: str) -> None:
    """Keep ``idx`` of ``linear``'s outputs (``out``) or inputs (``in``)."""
    if dim == "out":
        linear.weight = nn.Parameter(linear.weight.index_select(0, idx).contiguous(), requires_grad=linear.weight.requires_grad)
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, idx).contiguous(), requires_grad=linear.bias.requires_grad)
        linear.out_features = len(idx)
    else:
        linear.weight = nn.Parameter(linear.weight.index_select(1, idx).contiguous(), requires_grad=linear.weight.requires_grad)
        linear.in_features = len(idx)


@torch.no_grad()
def keep_heads(attn: nn.Module, kept: list[int], q_scale: float = 1.0, k_scale: float = 1.0) -> None:
    """Keep heads ``kept`` of a ``WanAttention`` in place (see the module doc); the norms' kept weights times the factors."""
    d = attn.inner_dim // attn.heads
    idx = torch.tensor([h * d + j for h in kept for j in range(d)], device=attn.to_q.weight.device)
    for proj in (attn.to_q, attn.to_k, attn.to_v):
        _select(proj, idx, "out")
    _select(attn.to_out[0], idx, "in")
    for norm, scale in ((attn.norm_q, q_scale), (attn.norm_k, k_scale)):
        if norm.weight is not None:
            norm.weight = nn.Parameter((norm.weight.index_select(0, idx) * scale).contiguous(), requires_grad=norm.weight.requires_grad)
        norm.normalized_shape = (len(idx),)
    attn.heads = len(kept)
    attn.inner_dim = attn.kv_inner_dim = len(idx)


@torch.no_grad()
def keep_ffn(ffn: nn.Module, kept: list[int]) -> None:
    """Keep hidden channels ``kept`` of a ``FeedForward`` in place (``net.0.proj`` rows, ``net.2`` columns)."""
    idx = torch.tensor(kept, device=ffn.net[2].weight.device)
    _select(ffn.net[0].proj, idx, "out")
    _select(ffn.net[2], idx, "in")


def _blocks(module: nn.Module) -> nn.ModuleList:
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return base.blocks


def apply_head_ffn_plan(module: nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> nn.Module:
    """Replay ``plan`` on ``module`` in place (after ``block_plan``'s surgery, if any) and return it.

    Everything is checked before any weight changes: a plan for another architecture or block plan, a block count
    that differs, an attention this code does not handle, or indices out of range fail with ``PlanError`` and leave
    ``module`` as it was. The widths left are registered in the config (``WIDTH_KEY``).
    """
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    if base.config.get(WIDTH_KEY):
        raise PlanError(f"this transformer is width-pruned already ({WIDTH_KEY} in its config); replay a plan on the unpruned one")
    validate_head_ffn_plan(plan, base_config(base), block_plan)
    blocks = _blocks(module)
    if len(blocks) != len(plan["blocks"]):
        raise PlanError(f"the head / FFN plan lists {len(plan['blocks'])} blocks, this transformer has {len(blocks)}: "
                        "apply its block plan first")
    for i, block in enumerate(blocks):
        _check_attention(f"blocks.{i}.attn1", block.attn1)
        _check_attention(f"blocks.{i}.attn2", block.attn2)
        _check_ffn(f"blocks.{i}.ffn", block.ffn)
    for block, entry in zip(blocks, plan["blocks"]):
        for name in ("attn1", "attn2"):
            a = entry[name]
            keep_heads(getattr(block, name), a["kept_heads"], float(a["norm_q_scale"]), float(a["norm_k_scale"]))
        keep_ffn(block.ffn, entry["ffn"]["kept"])
    base.register_to_config(**{WIDTH_KEY: head_ffn_widths(plan)})
    return module


def set_block_widths(module: nn.Module, widths: list[dict[str, int]]) -> nn.Module:
    """Build ``module``'s blocks at ``widths`` (the config's ``WIDTH_KEY``), in place: the architecture a width-pruned
    transformer's weights load into (which heads and channels the values came from is the plan's record, not needed here)."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    config = base_config(base)
    blocks = _blocks(module)
    widths = check_block_widths(widths, config, len(blocks))
    for i, block in enumerate(blocks):
        _check_attention(f"blocks.{i}.attn1", block.attn1)
        _check_attention(f"blocks.{i}.attn2", block.attn2)
        _check_ffn(f"blocks.{i}.ffn", block.ffn)
    for block, w in zip(blocks, widths):
        keep_heads(block.attn1, list(range(w["attn1_heads"])))
        keep_heads(block.attn2, list(range(w["attn2_heads"])))
        keep_ffn(block.ffn, list(range(w["ffn_dim"])))
    base.register_to_config(**{WIDTH_KEY: widths})
    return module


def check_plan_widths(config_widths: Any, plan: dict[str, Any]) -> None:
    """A pruned directory's config widths and its plan file must describe the same architecture."""
    if config_widths is not None and config_widths != head_ffn_widths(plan):
        raise PlanError(f"the transformer config's {WIDTH_KEY} and the head / FFN plan beside it disagree; the directory was "
                        "edited after pruning: re-run turbo-edge prune or restore the plan it was written with")
