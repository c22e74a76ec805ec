"""Block-pruning plans as data, and the surgery that replays them on a UNet3DConditionModel.

A plan (``pruning_plan.json``) names removable *units* of a base architecture:

- ``down_blocks.K.layers.I``: layer I of down block K (its resnet, temporal conv and, in cross-attention blocks,
  its spatial and temporal transformer) together with its partner in the mirrored up block
  ``up_blocks.(N-1-K).layers.(L-I)`` (L = layers_per_block). The partner is forced by the skip connections:
  removing a down layer removes one skip, so the mirrored up block must consume one skip fewer. Up layer L-I
  (not the "mirror" L-1-I) is the one whose removal (a) never changes the hidden-state channels its successor
  sees, because up layer 0 is the only one fed by the deeper level, and (b) leaves every remaining up layer
  with exactly the skip it saw when the two layers are replaced by identities, so the importance measured by
  identity hooks (importance.py) is the importance of the surgery.
- ``mid_block.layers.1``: the mid block's (attention, temporal attention, resnet, temporal conv) pair.
- ``mid_block``: the whole mid block (UNet3DConditionModel skips a ``None`` mid block).

UNet3DConditionModel's config cannot express uneven depth, so a pruned UNet is rebuilt as: the base config
-> ``from_config`` -> ``apply_plan`` -> (``channels.apply_channel_plan`` when the directory also holds a channel
plan, ``channel_plan.json``: blocks first, then widths) -> strict safetensors load (``load_pruned_unet``). This
module imports nothing from the pruning training code (nor torch-pruning), so ``load_teacher`` can use it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

PLAN_FILE = "pruning_plan.json"
CHANNEL_PLAN_FILE = "channel_plan.json"  # channels.py's plan; a pruned directory holds either file or both
PLAN_VERSION = 1
_DOWN_UNIT = re.compile(r"^down_blocks\.(\d+)\.layers\.(\d+)$")
MID_PAIR, MID_WHOLE = "mid_block.layers.1", "mid_block"
_LAYER_LISTS = ("resnets", "temp_convs", "attentions", "temp_attentions")


class PlanError(ValueError):
    """A pruning plan that cannot be applied to this architecture (reported before any training)."""


def base_config(unet: Any) -> dict[str, Any]:
    """The UNet's public config as plain JSON (private ``_`` keys dropped: they do not define the architecture)."""
    return json.loads(json.dumps({k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, default=list))


def architecture_hash(config: dict[str, Any]) -> str:
    """A short hash of the architecture-defining config: a plan only applies to the architecture it was made for."""
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _levels(config: dict[str, Any]) -> tuple[list[int], int]:
    channels = list(config["block_out_channels"])
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise PlanError(f"layers_per_block must be one int for UNet3DConditionModel, got {layers!r}")
    return channels, layers


def down_layer_removable(config: dict[str, Any], block: int, layer: int) -> bool:
    """A down layer can go only if its resnet keeps the channel count (resnet 0 of a widening block cannot)."""
    channels, _ = _levels(config)
    if layer > 0:
        return True
    block_in = channels[0] if block == 0 else channels[block - 1]
    return block_in == channels[block]


def up_partner(config: dict[str, Any], block: int, layer: int) -> tuple[int, int]:
    """(up block, up layer) removed together with down layer ``layer`` of down block ``block`` (see module doc)."""
    channels, layers = _levels(config)
    return len(channels) - 1 - block, layers - layer


def removable_units(config: dict[str, Any]) -> list[str]:
    """Every unit a plan may name for this architecture, shallow to deep, then the mid block's."""
    channels, layers = _levels(config)
    units = [
        f"down_blocks.{k}.layers.{i}" for k in range(len(channels)) for i in range(layers) if down_layer_removable(config, k, i)
    ]
    return units + [MID_PAIR, MID_WHOLE]


def validate_plan(plan: dict[str, Any], config: dict[str, Any]) -> None:
    """Raise ``PlanError`` naming the problem if ``plan`` cannot be applied to a UNet with ``config``."""
    if not isinstance(plan, dict) or plan.get("kind") != "pruning_plan":
        raise PlanError("not a pruning plan: expected a JSON object with \"kind\": \"pruning_plan\"")
    if plan.get("version") != PLAN_VERSION:
        raise PlanError(f"pruning plan version {plan.get('version')} is not supported (this build reads {PLAN_VERSION})")
    expected = architecture_hash(config)
    if plan.get("architecture_hash") != expected:
        raise PlanError(
            f"the plan was made for another architecture (hash {plan.get('architecture_hash')}, this UNet's is {expected}); "
            f"make a plan for this model (e.g. turbo-edge prune --student MODEL --dry-run prints the resolved config)"
        )
    removed = plan.get("removed")
    if not isinstance(removed, list) or not removed:
        raise PlanError("the plan removes nothing: list at least one unit under \"removed\"")
    if len(set(removed)) != len(removed):
        raise PlanError(f"the plan names units more than once: {sorted({u for u in removed if removed.count(u) > 1})}")
    known = removable_units(config)
    unknown = [u for u in removed if u not in known]
    if unknown:
        raise PlanError(f"the plan names units this UNet does not have or cannot lose: {unknown}; removable units: {known}")
    if MID_PAIR in removed and MID_WHOLE in removed:
        raise PlanError(f"the plan names both {MID_WHOLE!r} and its part {MID_PAIR!r}; name one")
    if set(removed) >= set(known) - {MID_PAIR}:
        raise PlanError("the plan removes everything removable; keep at least some blocks")
    channels, layers = _levels(config)
    for k in range(len(channels)):
        if all(f"down_blocks.{k}.layers.{i}" in removed for i in range(layers)):
            raise PlanError(f"the plan removes every layer of down block {k}: each resolution level must keep at least one layer")


def make_plan(config: dict[str, Any], removed: list[str], rule: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated plan for ``config`` removing ``removed`` (ordered as ``removable_units`` orders them)."""
    order = {u: i for i, u in enumerate(removable_units(config))}
    plan = {
        "kind": "pruning_plan",
        "version": PLAN_VERSION,
        "rule": rule,
        "rule_details": details or {},
        "architecture_hash": architecture_hash(config),
        "base_config": config,
        "removed": sorted(removed, key=lambda u: order.get(u, len(order))),
    }
    plan["up_layers_removed"] = [
        "up_blocks.{}.layers.{}".format(*up_partner(config, *_down_unit(u))) for u in plan["removed"] if _DOWN_UNIT.match(u)
    ]
    validate_plan(plan, config)
    return plan


def vdmini_plan(config: dict[str, Any]) -> dict[str, Any]:
    """VDMini's rule: keep the deepest down block and the first up block whole, drop the second layer (resnet +
    attention pair) of every other down block and its up partner, and drop the mid block."""
    channels, layers = _levels(config)
    if layers < 2:
        raise PlanError(f"the VDMini rule drops each block's second layer; this UNet has layers_per_block={layers}")
    removed = [f"down_blocks.{k}.layers.1" for k in range(len(channels) - 1)] + [MID_WHOLE]
    return make_plan(config, removed, "vdmini", {"kept_whole": [f"down_blocks.{len(channels) - 1}", "up_blocks.0"]})


def lowest_cost_plan(config: dict[str, Any], table: dict[str, Any], count: int) -> dict[str, Any]:
    """Remove the ``count`` units with the lowest measured content + motion cost (an importance table's rows)."""
    rows = sorted(table["units"], key=lambda r: r["content_cost"] + r["motion_cost"])
    chosen: list[str] = []
    for row in rows:
        trial = chosen + [row["name"]]
        try:
            make_plan(config, trial, "lowest_cost")
        except PlanError:
            continue
        chosen = trial
        if len(chosen) == count:
            break
    return make_plan(config, chosen, "lowest_cost", {"count": count, "criterion": "content_cost + motion_cost"})


RULES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"vdmini": vdmini_plan}


def _down_unit(name: str) -> tuple[int, int]:
    m = _DOWN_UNIT.match(name)
    assert m is not None, name
    return int(m.group(1)), int(m.group(2))


def _delete_layers(block: Any, indices: list[int]) -> None:
    """Delete layer ``indices`` from every per-layer ModuleList of a down / up / mid block, keeping them aligned."""
    import torch

    for attr in _LAYER_LISTS:
        modules = getattr(block, attr, None)
        if modules is None:
            continue
        keep = [m for i, m in enumerate(modules) if i not in set(indices)]
        setattr(block, attr, torch.nn.ModuleList(keep))


def apply_plan(unet: Any, plan: dict[str, Any]) -> Any:
    """Delete the plan's units from ``unet`` in place and return it (validated first; no weights are touched)."""
    config = base_config(unet)
    validate_plan(plan, config)
    channels, _ = _levels(config)
    down: dict[int, list[int]] = {}
    up: dict[int, list[int]] = {}
    for name in plan["removed"]:
        if _DOWN_UNIT.match(name):
            k, i = _down_unit(name)
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
    import torch

    mid.attentions, mid.temp_attentions = torch.nn.ModuleList(), torch.nn.ModuleList()
    mid.resnets, mid.temp_convs = torch.nn.ModuleList(mid.resnets[:1]), torch.nn.ModuleList(mid.temp_convs[:1])


def _check_alignment(unet: Any, levels: int) -> None:
    """Blocks zip their layer lists, which would silently drop layers if the lists disagreed in length."""
    for name, block in [(f"down_blocks.{k}", b) for k, b in enumerate(unet.down_blocks)] + [
        (f"up_blocks.{j}", b) for j, b in enumerate(unet.up_blocks)
    ]:
        lengths = {attr: len(getattr(block, attr)) for attr in _LAYER_LISTS if getattr(block, attr, None) is not None}
        if len(set(lengths.values())) > 1:
            raise PlanError(f"{name}'s layer lists disagree after surgery: {lengths}")
    if len(unet.down_blocks) != levels or len(unet.up_blocks) != levels:
        raise PlanError("surgery changed the number of resolution levels")


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"pruning plan {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlanError(f"pruning plan {path} is not valid JSON ({exc})") from exc


# A JSON list of ints as indent=2 writes it (real newlines occur only between tokens, never inside strings).
_INT_LIST = re.compile(r"\[\n\s+(\d+(?:,\n\s+\d+)*)\n\s*\]")


def write_plan(plan: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Index lists (a channel plan's kept channels) on one line each: indent=2 gives every int a line of its own.
    text = _INT_LIST.sub(lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", json.dumps(plan, indent=2))
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def read_plans(model_dir: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(block plan, channel plan) of a model directory; ``None`` for the one it lacks (both: not pruned)."""
    model_dir = Path(model_dir)
    block = read_plan(model_dir / PLAN_FILE) if (model_dir / PLAN_FILE).is_file() else None
    channel = read_plan(model_dir / CHANNEL_PLAN_FILE) if (model_dir / CHANNEL_PLAN_FILE).is_file() else None
    return block, channel


def build_pruned_unet(plan: dict[str, Any] | None, channel_plan: dict[str, Any] | None = None) -> Any:
    """A freshly initialised UNet3DConditionModel with the plans' architecture: base config, block surgery, widths."""
    from turbo_edge.core.models import unet_from_config

    source = plan if plan is not None else channel_plan
    if source is None:
        raise PlanError("no pruning plan: give a block plan, a channel plan or both")
    if not isinstance(source.get("base_config"), dict):
        raise PlanError("the pruning plan has no base_config to rebuild the UNet from")
    unet = unet_from_config(copy.deepcopy(source["base_config"]))
    if plan is not None:
        apply_plan(unet, plan)
    if channel_plan is not None:
        from turbo_edge.prune.channels import apply_channel_plan  # torch only; torch-pruning is not needed to replay

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
