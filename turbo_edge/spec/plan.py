"""Pruning plans as data: the replayable description of what a pruned model removed, torch-free.

A block plan (``pruning_plan.json``) names removable *units* of a UNet3D base architecture:

- ``down_blocks.K.layers.I``: layer I of down block K (its resnet, temporal conv and, in cross-attention blocks,
  its spatial and temporal transformer) together with its partner in the mirrored up block
  ``up_blocks.(N-1-K).layers.(L-I)`` (L = layers_per_block). The partner is forced by the skip connections:
  removing a down layer removes one skip, so the mirrored up block must consume one skip fewer. Up layer L-I
  (not the "mirror" L-1-I) is the one whose removal (a) never changes the hidden-state channels its successor
  sees, because up layer 0 is the only one fed by the deeper level, and (b) leaves every remaining up layer
  with exactly the skip it saw when the two layers are replaced by identities, so the importance measured by
  identity hooks (prune/importance.py) is the importance of the surgery.
- ``mid_block.layers.1``: the mid block's (attention, temporal attention, resnet, temporal conv) pair.
- ``mid_block``: the whole mid block (UNet3DConditionModel skips a ``None`` mid block).

A video DiT's (``WanTransformer3DModel``'s) units are its transformer blocks, ``blocks.N``: every block maps tokens to
tokens of the same width, so any subset but all may go. A plan is the same JSON object for both; which kind of units
it names follows from the base config it was made for (``block_out_channels``: a UNet; ``num_layers`` and
``patch_size``: a DiT).

A channel plan (``channel_plan.json``, made by prune/channels.py with torch-pruning) holds explicit kept indices
per layer. Both are validated here against the base architecture's config (a plain dict) and replayed by
``core.replay`` (torch), so loading a pruned model needs neither the pruning code nor torch-pruning.

A DiT's width plan is a head / FFN plan (kind ``head_ffn_plan``, in the same ``channel_plan.json`` file; made by
``prune/dit_widths.py``, replayed by ``core/dit_replay.py``): for every block the model keeps after its block plan,
the attention heads its self- and cross-attention keep, the feed-forward hidden channels it keeps, and the factor
folded into each kept ``norm_q`` / ``norm_k`` weight (Wan normalises q and k over all heads at once, so a kept head's
statistic changes when others go; the factor is fitted on measured calls). The widths it leaves are also written
into the transformer's config (``WIDTH_KEY``), which is what the family loader builds the architecture from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from turbo_edge.spec.errors import PlanError

PLAN_FILE = "pruning_plan.json"
CHANNEL_PLAN_FILE = "channel_plan.json"  # a pruned directory holds either file or both
PLAN_VERSION = 1
CHANNEL_PLAN_KIND = "channel_pruning_plan"
CHANNEL_PLAN_VERSION = 1
UNET_CHANNEL_IMPORTANCES = ("magnitude", "l1", "random")
# "activation": measured contributions of each head / FFN channel on calibration calls (the DiT head / FFN plan only).
CHANNEL_IMPORTANCES = (*UNET_CHANNEL_IMPORTANCES, "activation")
HEAD_FFN_PLAN_KIND = "head_ffn_plan"
HEAD_FFN_PLAN_VERSION = 1
# The transformer config key a width-pruned DiT carries: one {"attn1_heads", "attn2_heads", "ffn_dim"} per block.
WIDTH_KEY = "turbo_edge_block_widths"
WIDTH_FIELDS = ("attn1_heads", "attn2_heads", "ffn_dim")
BLOCK_RULES = ("vdmini", "lowest_cost", "none")
_DOWN_UNIT = re.compile(r"^down_blocks\.(\d+)\.layers\.(\d+)$")
MID_PAIR, MID_WHOLE = "mid_block.layers.1", "mid_block"


def architecture_hash(config: dict[str, Any]) -> str:
    """A short hash of the architecture-defining config: a plan only applies to the architecture it was made for."""
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=list).encode()).hexdigest()[:16]


def is_dit(config: dict[str, Any]) -> bool:
    """A DiT's config (blocks of tokens), as opposed to a UNet's (resolution levels of layers)."""
    if "block_out_channels" in config:
        return False
    if "num_layers" in config and "patch_size" in config:
        return True
    raise PlanError("the config is neither a UNet's (block_out_channels) nor a DiT's (num_layers, patch_size): no plan applies")


def dit_units(config: dict[str, Any]) -> list[str]:
    layers = config["num_layers"]
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise PlanError(f"num_layers must be a positive int, got {layers!r}")
    return [f"blocks.{i}" for i in range(layers)]


def levels(config: dict[str, Any]) -> tuple[list[int], int]:
    channels = list(config["block_out_channels"])
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise PlanError(f"layers_per_block must be one int for UNet3DConditionModel, got {layers!r}")
    return channels, layers


def down_layer_removable(config: dict[str, Any], block: int, layer: int) -> bool:
    """A down layer can go only if its resnet keeps the channel count (resnet 0 of a widening block cannot)."""
    channels, _ = levels(config)
    if layer > 0:
        return True
    block_in = channels[0] if block == 0 else channels[block - 1]
    return block_in == channels[block]


def up_partner(config: dict[str, Any], block: int, layer: int) -> tuple[int, int]:
    """(up block, up layer) removed together with down layer ``layer`` of down block ``block`` (see module doc)."""
    channels, layers = levels(config)
    return len(channels) - 1 - block, layers - layer


def removable_units(config: dict[str, Any]) -> list[str]:
    """Every unit a plan may name for this architecture: a UNet's down layers shallow to deep, then the mid block's; a
    DiT's blocks in order."""
    if is_dit(config):
        return dit_units(config)
    channels, layers = levels(config)
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
        raise PlanError(f"the plan names units this model does not have or cannot lose: {unknown}; removable units: {known}")
    if is_dit(config):
        if len(removed) >= len(known):
            raise PlanError("the plan removes every transformer block; keep at least one")
        return
    if MID_PAIR in removed and MID_WHOLE in removed:
        raise PlanError(f"the plan names both {MID_WHOLE!r} and its part {MID_PAIR!r}; name one")
    if set(removed) >= set(known) - {MID_PAIR}:
        raise PlanError("the plan removes everything removable; keep at least some blocks")
    channels, layers = levels(config)
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
    if not is_dit(config):
        plan["up_layers_removed"] = [
            "up_blocks.{}.layers.{}".format(*up_partner(config, *down_unit(u))) for u in plan["removed"] if _DOWN_UNIT.match(u)
        ]
    validate_plan(plan, config)
    return plan


def vdmini_plan(config: dict[str, Any], table: dict[str, Any] | None = None, count: int = 0) -> dict[str, Any]:
    """VDMini's rule. A UNet: keep the deepest down block and the first up block whole, drop the second layer (resnet +
    attention pair) of every other down block and its up partner, and drop the mid block. A DiT has no resolution
    levels to read the rule from, so it is applied from measurement: VDMini keeps the units that carry motion (they
    do not recover) and removes content units (ICD restores them), so the ``count`` blocks with the lowest measured
    motion cost go (ties: lower content cost first)."""
    if is_dit(config):
        if table is None or count < 1:
            raise PlanError("the VDMini rule on a DiT ranks blocks by measured motion cost: it needs the importance table "
                            "(importance_clips >= 1) and remove_count >= 1")
        rows = sorted(table["units"], key=lambda r: (r["motion_cost"], r["content_cost"]))
        chosen = [r["name"] for r in rows[:count]]
        return make_plan(config, chosen, "vdmini", {"count": count, "criterion": "lowest motion_cost (DiT)"})
    channels, layers = levels(config)
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


def down_unit(name: str) -> tuple[int, int]:
    m = _DOWN_UNIT.match(name)
    if m is None:
        raise PlanError(f"{name!r} is not a down-block unit (down_blocks.K.layers.I)")
    return int(m.group(1)), int(m.group(2))


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


def channel_plan_id(plan: dict[str, Any]) -> str:
    """A short hash of what the plan keeps: two plans with the same id build the same architecture."""
    body = {k: plan.get(k) for k in ("architecture_hash", "after_blocks", "groups")}
    if "blocks" in plan:  # a DiT head / FFN plan: what each block keeps, and the norm factors
        body["blocks"] = plan["blocks"]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def check_ratio(ratio: Any) -> float:
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise PlanError(f"the channel pruning ratio must be in (0, 1), got {ratio!r}")
    return float(ratio)


def validate_channel_plan(plan: dict[str, Any], config: dict[str, Any], block_plan: dict[str, Any] | None = None) -> None:
    """Raise ``PlanError`` if the plan's header does not fit a UNet with ``config`` after ``block_plan``."""
    if not isinstance(plan, dict) or plan.get("kind") != CHANNEL_PLAN_KIND:
        raise PlanError(f"not a channel pruning plan: expected a JSON object with \"kind\": \"{CHANNEL_PLAN_KIND}\"")
    if plan.get("version") != CHANNEL_PLAN_VERSION:
        raise PlanError(f"channel plan version {plan.get('version')} is not supported (this build reads {CHANNEL_PLAN_VERSION})")
    expected = architecture_hash(config)
    if plan.get("architecture_hash") != expected:
        raise PlanError(f"the channel plan was made for another architecture (hash {plan.get('architecture_hash')}, this UNet's is {expected})")
    check_ratio(plan.get("ratio"))
    blocks = list(block_plan["removed"]) if block_plan else []
    if plan.get("after_blocks") != blocks:
        raise PlanError(f"the channel plan was made after removing blocks {plan.get('after_blocks')}, but this model's block plan removes {blocks}")
    if not isinstance(plan.get("groups"), list) or not plan["groups"]:
        raise PlanError("the channel plan prunes nothing: list at least one group under \"groups\"")




# ---------------------------------------------------------------- DiT head / FFN plans


def is_head_ffn_plan(plan: Any) -> bool:
    return isinstance(plan, dict) and plan.get("kind") == HEAD_FFN_PLAN_KIND


def dit_base_config(config: dict[str, Any]) -> dict[str, Any]:
    """A DiT config without the widths a head / FFN plan left (``WIDTH_KEY``): the architecture the plan was made for."""
    return {k: v for k, v in config.items() if k != WIDTH_KEY}


def _sorted_indices(value: Any, size: int) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
            and value == sorted(set(value)) and value[0] >= 0 and value[-1] < size)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < float(value) < float("inf")


def validate_head_ffn_plan(plan: dict[str, Any], config: dict[str, Any], block_plan: dict[str, Any] | None = None) -> None:
    """Raise ``PlanError`` naming the problem if ``plan`` cannot be replayed on a DiT with ``config`` after ``block_plan``."""
    if not is_head_ffn_plan(plan):
        raise PlanError(f"not a DiT head / FFN plan: expected a JSON object with \"kind\": \"{HEAD_FFN_PLAN_KIND}\"")
    if plan.get("version") != HEAD_FFN_PLAN_VERSION:
        raise PlanError(f"head / FFN plan version {plan.get('version')} is not supported (this build reads {HEAD_FFN_PLAN_VERSION})")
    base = dit_base_config(config)
    if not is_dit(base):
        raise PlanError("a head / FFN plan applies to a DiT (num_layers, patch_size); this config is a UNet's")
    expected = architecture_hash(base)
    if plan.get("architecture_hash") != expected:
        raise PlanError(f"the head / FFN plan was made for another architecture (hash {plan.get('architecture_hash')}, this "
                        f"transformer's is {expected}); make a plan for this model (turbo-edge prune --set channel_ratio=...)")
    removed = list(block_plan["removed"]) if block_plan else []
    if plan.get("after_blocks") != removed:
        raise PlanError(f"the head / FFN plan was made after removing blocks {plan.get('after_blocks')}, but this model's block plan "
                        f"removes {removed}")
    kept_blocks = [u for u in dit_units(base) if u not in set(removed)]
    blocks = plan.get("blocks")
    if not isinstance(blocks, list) or len(blocks) != len(kept_blocks):
        raise PlanError(f"the head / FFN plan must list one entry per kept block ({len(kept_blocks)}), "
                        f"it lists {len(blocks) if isinstance(blocks, list) else 'none'}")
    heads, ffn = int(base["num_attention_heads"]), int(base["ffn_dim"])
    for i, (entry, source) in enumerate(zip(blocks, kept_blocks)):
        where = f"the head / FFN plan's entry {i}"
        if not isinstance(entry, dict) or entry.get("name") != f"blocks.{i}" or entry.get("source") != source:
            raise PlanError(f"{where} must be {{\"name\": \"blocks.{i}\", \"source\": \"{source}\", ...}} (blocks in order, after the block plan)")
        for attn in ("attn1", "attn2"):
            a = entry.get(attn)
            if not isinstance(a, dict) or a.get("heads") != heads or not _sorted_indices(a.get("kept_heads"), heads):
                raise PlanError(f"{where}: {attn} must keep sorted unique heads in [0, {heads}) of its {heads}")
            if not (_positive(a.get("norm_q_scale")) and _positive(a.get("norm_k_scale"))):
                raise PlanError(f"{where}: {attn}'s norm_q_scale / norm_k_scale must be positive numbers")
        f = entry.get("ffn")
        if not isinstance(f, dict) or f.get("size") != ffn or not _sorted_indices(f.get("kept"), ffn):
            raise PlanError(f"{where}: ffn must keep sorted unique channels in [0, {ffn}) of its {ffn}")


def head_ffn_widths(plan: dict[str, Any]) -> list[dict[str, int]]:
    """The per-block widths a head / FFN plan leaves, as the transformer config records them (``WIDTH_KEY``)."""
    return [{"attn1_heads": len(b["attn1"]["kept_heads"]), "attn2_heads": len(b["attn2"]["kept_heads"]), "ffn_dim": len(b["ffn"]["kept"])}
            for b in plan["blocks"]]


def check_block_widths(widths: Any, config: dict[str, Any], blocks: int) -> list[dict[str, int]]:
    """The config's ``WIDTH_KEY`` value, checked against the base architecture and the number of blocks built."""
    heads, ffn = int(config["num_attention_heads"]), int(config["ffn_dim"])
    if not isinstance(widths, list) or len(widths) != blocks:
        raise PlanError(f"{WIDTH_KEY} must list one entry per transformer block ({blocks}); the config's has "
                        f"{len(widths) if isinstance(widths, list) else repr(widths)}")
    limits = {"attn1_heads": heads, "attn2_heads": heads, "ffn_dim": ffn}
    for i, w in enumerate(widths):
        if not isinstance(w, dict) or set(w) != set(WIDTH_FIELDS) or not all(
                isinstance(w[k], int) and not isinstance(w[k], bool) and 1 <= w[k] <= limits[k] for k in WIDTH_FIELDS):
            raise PlanError(f"{WIDTH_KEY}[{i}] must be {{attn1_heads: 1..{heads}, attn2_heads: 1..{heads}, ffn_dim: 1..{ffn}}}, got {w!r}")
    return [{k: int(w[k]) for k in WIDTH_FIELDS} for w in widths]
