"""Replaying pruning plans on a UNet3DConditionModel: block surgery, then widths, then a strict weight load.

UNet3DConditionModel's config cannot express uneven depth or pruned widths, so a pruned UNet is rebuilt as: the
plan's base config -> ``from_config`` -> ``apply_plan`` (blocks) -> ``apply_channel_plan`` (widths: index selects
and the stale ints fixed, no tracing, no torch-pruning) -> strict safetensors load (``load_pruned_unet``).
The plans themselves are data (``spec.plan``); making them is the prune stage's job.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from turbo_edge.core.models import unet_from_config
from turbo_edge.spec.errors import PlanError
from turbo_edge.spec.plan import (
    MID_PAIR,
    MID_WHOLE,
    down_unit,
    levels,
    read_plan,
    up_partner,
    validate_channel_plan,
    validate_plan,
)

DOWN_UNIT = re.compile(r"^down_blocks\.(\d+)\.layers\.(\d+)$")
LAYER_LISTS = ("resnets", "temp_convs", "attentions", "temp_attentions")
WEIGHTED = (nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.GroupNorm, nn.LayerNorm)


def base_config(unet: Any) -> dict[str, Any]:
    """The UNet's public config as plain JSON (private ``_`` keys dropped: they do not define the architecture)."""
    return json.loads(json.dumps({k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, default=list))


def _delete_layers(block: Any, indices: list[int]) -> None:
    """Delete layer ``indices`` from every per-layer ModuleList of a down / up / mid block, keeping them aligned."""
    for attr in LAYER_LISTS:
        modules = getattr(block, attr, None)
        if modules is None:
            continue
        keep = [m for i, m in enumerate(modules) if i not in set(indices)]
        setattr(block, attr, torch.nn.ModuleList(keep))


def apply_plan(unet: Any, plan: dict[str, Any]) -> Any:
    """Delete the plan's units from ``unet`` in place and return it (validated first; no weights are touched)."""
    config = base_config(unet)
    validate_plan(plan, config)
    channels, _ = levels(config)
    down: dict[int, list[int]] = {}
    up: dict[int, list[int]] = {}
    for name in plan["removed"]:
        if DOWN_UNIT.match(name):
            k, i = down_unit(name)
            down.setdefault(k, []).append(i)
            j, m = up_partner(config, k, i)
            up.setdefault(j, []).append(m)
    for k, idx in down.items():
        _delete_layers(unet.down_blocks[k], idx)
    for j, idx in up.items():
        _delete_layers(unet.up_blocks[j], idx)
    if MID_WHOLE in plan["removed"]:
        unet.mid_block = None  # UNet3DConditionModel.forward skips a None mid block.
    elif MID_PAIR in plan["removed"]:
        # Attention pair j-1 and resnet / temporal conv j go together: UNetMidBlock3DCrossAttn zips them.
        mid = unet.mid_block
        _delete_layers_pairwise(mid)
    _check_alignment(unet, len(channels))
    return unet


def _delete_layers_pairwise(mid: Any) -> None:
    mid.attentions, mid.temp_attentions = torch.nn.ModuleList(), torch.nn.ModuleList()
    mid.resnets, mid.temp_convs = torch.nn.ModuleList(mid.resnets[:1]), torch.nn.ModuleList(mid.temp_convs[:1])


def _check_alignment(unet: Any, levels: int) -> None:
    """Blocks zip their layer lists, which would silently drop layers if the lists disagreed in length."""
    for name, block in [(f"down_blocks.{k}", b) for k, b in enumerate(unet.down_blocks)] + [
        (f"up_blocks.{j}", b) for j, b in enumerate(unet.up_blocks)
    ]:
        lengths = {attr: len(getattr(block, attr)) for attr in LAYER_LISTS if getattr(block, attr, None) is not None}
        if len(set(lengths.values())) > 1:
            raise PlanError(f"{name}'s layer lists disagree after surgery: {lengths}")
    if len(unet.down_blocks) != levels or len(unet.up_blocks) != levels:
        raise PlanError("surgery changed the number of resolution levels")


def build_pruned_unet(plan: dict[str, Any] | None, channel_plan: dict[str, Any] | None = None) -> Any:
    """A freshly initialised UNet3DConditionModel with the plans' architecture: base config, block surgery, widths."""
    source = plan if plan is not None else channel_plan
    if source is None:
        raise PlanError("no pruning plan: give a block plan, a channel plan or both")
    if not isinstance(source.get("base_config"), dict):
        raise PlanError("the pruning plan has no base_config to rebuild the UNet from")
    unet = unet_from_config(copy.deepcopy(source["base_config"]))
    if plan is not None:
        apply_plan(unet, plan)
    if channel_plan is not None:
        apply_channel_plan(unet, channel_plan, plan)
    return unet


def load_pruned_unet(unet_dir: str | os.PathLike[str], plan: dict[str, Any] | str | os.PathLike[str] | None,
                     torch_dtype: Any = None, channel_plan: dict[str, Any] | str | os.PathLike[str] | None = None) -> Any:
    """Rebuild the pruned architecture from its plan(s) and load ``unet_dir``'s safetensors strictly.

    ``from_pretrained`` cannot do this: the saved config.json still says layers_per_block=L and the unpruned
    widths everywhere.
    """
    from safetensors.torch import load_file

    plan = plan if plan is None or isinstance(plan, dict) else read_plan(plan)
    channel_plan = channel_plan if channel_plan is None or isinstance(channel_plan, dict) else read_plan(channel_plan)
    unet = build_pruned_unet(plan, channel_plan)
    files = sorted(Path(unet_dir).glob("*.safetensors"))
    if not files:
        raise PlanError(f"{unet_dir} has no .safetensors weights")
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(str(f)))
    try:
        missing, unexpected = unet.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise PlanError(f"the weights in {unet_dir} do not fit the architecture rebuilt from the plan: {exc}") from exc
    if missing or unexpected:
        raise PlanError(
            f"the weights in {unet_dir} do not fit the architecture rebuilt from the plan: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    if torch_dtype is not None and torch_dtype != next(unet.parameters()).dtype:
        unet = unet.to(torch_dtype)
    return unet.eval()


def width_of(m: nn.Module, dim: str) -> int:
    if isinstance(m, nn.GroupNorm):
        return m.num_channels
    if isinstance(m, nn.LayerNorm):
        return m.normalized_shape[0]
    if isinstance(m, nn.Linear):
        return m.out_features if dim == "out" else m.in_features
    return m.out_channels if dim == "out" else m.in_channels


def width_units(unet: nn.Module) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """The units pruning keeps whole, as built: Attention name -> head_dim, GroupNorm name -> group size, and the
    gated feed-forward projections (GEGLU / SwiGLU) whose output halves are multiplied pairwise."""
    from diffusers.models.activations import GEGLU, SwiGLU
    from diffusers.models.attention_processor import Attention

    head_dims, groups, gated = {}, {}, set()
    for name, m in unet.named_modules():
        if isinstance(m, Attention):
            head_dims[name] = m.inner_dim // m.heads
        elif isinstance(m, nn.GroupNorm):
            groups[name] = m.num_channels // m.num_groups
        elif isinstance(m, GEGLU | SwiGLU):
            gated.add(f"{name}.proj")
    return head_dims, groups, gated


def apply_channel_plan(unet: nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> nn.Module:
    """Replay ``plan`` on ``unet`` in place (after ``block_plan``'s surgery, if any) and return it.

    Every layer is checked before any weight changes: a plan naming a missing layer, a layer of another type or
    width, or indices out of range fails with ``PlanError`` and leaves ``unet`` as it was.
    """
    validate_channel_plan(plan, base_config(unet), block_plan)
    modules = dict(unet.named_modules())
    widths = width_units(unet)
    norm_sizes = widths[1]
    edits = []
    for group in plan["groups"]:
        for layer in group.get("layers", []):
            name, dim, kept = layer.get("name"), layer.get("dim"), layer.get("kept")
            m = modules.get(name)
            if not isinstance(m, WEIGHTED + NORMS):
                raise PlanError(f"the channel plan names layer {name!r}, which this UNet does not have (or is no conv / linear / norm)")
            if dim not in ("out", "in") or (isinstance(m, nn.Conv2d | nn.Conv3d) and m.groups != 1):
                raise PlanError(f"the channel plan prunes {name!r} along {dim!r}, which replay cannot do")
            size = width_of(m, dim)
            if size != layer.get("size"):
                raise PlanError(f"the channel plan expects {name!r} to have {layer.get('size')} {dim} channels; it has {size}")
            if not isinstance(kept, list) or not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= size:
                raise PlanError(f"the channel plan's kept indices for {name!r} are not sorted unique indices in [0, {size})")
            if isinstance(m, nn.GroupNorm) and len(kept) % norm_sizes[name]:
                raise PlanError(f"the channel plan keeps {len(kept)} channels of {name!r}, not a whole number of its groups of {norm_sizes[name]}")
            edits.append((m, dim, kept))
    _check_heads(unet, {(id(m), dim): len(kept) for m, dim, kept in edits}, widths[0])
    for m, dim, kept in edits:
        _keep(m, dim, kept)
    fix_stale_ints(unet, widths)
    return unet


def _check_heads(unet: nn.Module, new_widths: dict[tuple[int, str], int], head_dims: dict[str, int]) -> None:
    """Before any edit: every Attention must end with equal to_q / to_k / to_v widths in whole heads (UNet3D's
    attention has no grouped kv heads), else the processors would split it wrongly or fail mid-forward."""
    from diffusers.models.attention_processor import Attention

    for name, m in unet.named_modules():
        if not isinstance(m, Attention):
            continue
        outs = [new_widths.get((id(p), "out"), p.out_features) for p in (m.to_q, m.to_k, m.to_v)]
        if len(set(outs)) > 1 or outs[0] % head_dims[name]:
            raise PlanError(f"the channel plan leaves {name}'s to_q / to_k / to_v with widths {outs}, not equal whole heads of {head_dims[name]}")


@torch.no_grad()
def _keep(m: nn.Module, dim: str, kept: list[int]) -> None:
    """Keep channels ``kept`` of ``m`` along its output (``out``) or input (``in``) dimension."""
    idx = torch.tensor(kept, device=m.weight.device)
    axis = 0 if dim == "out" or isinstance(m, NORMS) else 1
    m.weight = nn.Parameter(m.weight.index_select(axis, idx).contiguous(), requires_grad=m.weight.requires_grad)
    if m.bias is not None and axis == 0:
        m.bias = nn.Parameter(m.bias.index_select(0, idx).contiguous(), requires_grad=m.bias.requires_grad)
    n = len(kept)
    if isinstance(m, nn.GroupNorm):
        m.num_channels = n
    elif isinstance(m, nn.LayerNorm):
        m.normalized_shape = (n,)
    elif isinstance(m, nn.Linear):
        setattr(m, "out_features" if dim == "out" else "in_features", n)
    else:
        setattr(m, "out_channels" if dim == "out" else "in_channels", n)


def fix_stale_ints(unet: nn.Module, widths: tuple[dict[str, int], dict[str, int], set[str]]) -> None:
    """Reset the plain ints that still describe the unpruned widths (pruning only changes tensors and layer sizes)."""
    from diffusers.models.attention_processor import Attention

    head_dims, norm_sizes, _ = widths
    for name, m in unet.named_modules():
        if isinstance(m, nn.GroupNorm):
            m.num_groups = m.num_channels // norm_sizes[name]  # whole groups were removed: the group size stays
        elif isinstance(m, Attention):
            m.inner_dim, m.inner_kv_dim = m.to_q.out_features, m.to_k.out_features
            m.heads = m.inner_dim // head_dims[name]  # the processors split by heads; head_dim (and the scale) stay


