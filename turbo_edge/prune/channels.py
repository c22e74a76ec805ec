"""Channel (width) pruning of a UNet3DConditionModel with torch-pruning, written as a replayable plan.

What is pruned: only widths *inside* a layer, never a width another block or a skip connection sees.

- ``ResnetBlock2D``: conv1's output channels, with ``time_emb_proj``'s output (added to them), ``norm2`` and
  conv2's input. conv2 / ``conv_shortcut`` outputs stay: they are the block's residual stream.
- ``TemporalConvLayer``: the outputs of its first three Conv3d (and the GroupNorm + Conv3d input after each).
  conv4's output is added to the layer's input, so it stays.
- ``Attention`` (spatial, temporal, cross): whole heads of to_q / to_k / to_v, with to_out's input columns.
  ``head_dim`` never changes, so the softmax scale and every other head compute exactly what they did.
- ``FeedForward``: the GEGLU hidden width, as (value, gate) pairs: ``proj`` emits ``[value | gate]`` and
  ``chunk(2)`` multiplies unit i with unit H+i, so both halves lose the same units.

Everything that sets a stream width is frozen: ``conv_in``, ``conv_out``, the time embedding (with
``time_cond_proj``, the guidance w-embedding), ``transformer_in``'s and every transformer's ``proj_in`` /
``proj_out``, ``to_out``, ``ff.net.2``, resnet conv2 / shortcuts, down / up samplers. torch-pruning's dependency
graph (``DependencyGraph``, traced on a tiny forward) finds each internal group and refuses any group that would
touch a frozen layer's output, so down / up block outputs keep their width: the skip concatenations, block
surgery (plan.py) and ICD's per-block feature match (losses.py) all stay valid.

GroupNorm: an internal width that feeds a GroupNorm (resnet norm2, temporal-conv norms) loses *whole norm
groups* (the group size stays, ``num_groups`` drops). The kept channels are then normalised over exactly the
channels they were before, so the pruned model is the unpruned one with the removed channels' contributions
cut (a test checks this), and the count stays divisible by construction. (torch-pruning's ``MetaPruner``
instead prunes the same offset in every norm group, which changes every group's statistics, and its
``round_to`` clashes with that grouping; it also does not pair GEGLU halves. Hence this module uses
torch-pruning's graph, groups and ``GroupMagnitudeImportance`` but chooses the units itself.)

Units per group: norm groups, heads, GEGLU pairs or single channels; the ``floor(ratio * units)`` least
important go (importance averaged over each unit's channels), so no group loses more than ``ratio``.

The plan (``channel_plan.json``, kind ``channel_pruning_plan``) is a file of its own beside the block plan
(``pruning_plan.json``): it holds explicit *kept* indices per layer, which is torch-pruning's pruning history
expanded through the dependency graph. Replay (``apply_channel_plan``) therefore needs neither tracing nor
torch-pruning, only index selects and the stale ints fixed (GroupNorm ``num_groups``, Attention ``heads`` /
``inner_dim``), so ``load_teacher`` rebuilds pruned students without pruning code. A channel plan is made
after block surgery (blocks first) and names the block plan it was made on; loading checks they agree.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from turbo_edge.core.denoiser import call_denoiser
from turbo_edge.core.replay import NORMS, WEIGHTED, base_config, fix_stale_ints, width_of, width_units
from turbo_edge.spec.errors import PlanError
from turbo_edge.spec.plan import (
    CHANNEL_IMPORTANCES,
    CHANNEL_PLAN_KIND,
    CHANNEL_PLAN_VERSION,
    UNET_CHANNEL_IMPORTANCES,
    architecture_hash,
    check_ratio,
)


def _importance(name: str) -> Any:
    """torch-pruning's group importance for ``name`` (one score per channel of the group's root)."""
    import torch_pruning as tp

    if name == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)  # L2 over every layer of the group
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "random":
        return tp.importance.RandomImportance()  # seeded by the caller: an ablation baseline
    if name in CHANNEL_IMPORTANCES:
        raise PlanError(f"channel importance {name!r} measures a DiT's heads and FFN channels; a UNet's channel plan takes "
                        f"{list(UNET_CHANNEL_IMPORTANCES)}")
    raise PlanError(f"unknown channel importance {name!r}; known: {list(CHANNEL_IMPORTANCES)}")


def internal_layers(unet: nn.Module) -> set[str]:
    """Names of the layers whose output width is internal (see the module doc); every other layer is frozen."""
    from diffusers.models.attention import FeedForward
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D, TemporalConvLayer

    names: set[str] = set()
    for name, m in unet.named_modules():
        if isinstance(m, ResnetBlock2D):
            names.add(f"{name}.conv1")
            if m.time_emb_proj is not None:
                names.add(f"{name}.time_emb_proj")
        elif isinstance(m, TemporalConvLayer):
            names.update(f"{name}.{seq}.{len(getattr(m, seq)) - 1}" for seq in ("conv1", "conv2", "conv3"))
        elif isinstance(m, Attention):
            names.update(f"{name}.{proj}" for proj in ("to_q", "to_k", "to_v"))
        elif isinstance(m, FeedForward) and isinstance(getattr(m.net[0], "proj", None), nn.Linear):
            names.add(f"{name}.net.0.proj")  # GELU-family or gated (GEGLU / SwiGLU: paired in _units)
    return names


def example_inputs(unet: nn.Module) -> dict[str, torch.Tensor]:
    """A tiny forward for tracing: 2 frames at the smallest size every level can halve, 4 text tokens."""
    cfg = unet.config
    size = 2 ** len(cfg.block_out_channels)
    p = next(unet.parameters())
    inputs = {
        "sample": torch.randn(1, cfg.in_channels, 2, size, size, dtype=p.dtype, device=p.device),
        "timestep": torch.tensor([500], device=p.device),
        "encoder_hidden_states": torch.randn(1, 4, cfg.cross_attention_dim, dtype=p.dtype, device=p.device),
    }
    if cfg.time_cond_proj_dim:
        inputs["timestep_cond"] = torch.randn(1, cfg.time_cond_proj_dim, dtype=p.dtype, device=p.device)
    return inputs


def _forward(unet: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return call_denoiser(unet, inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"], inputs.get("timestep_cond"))


def _units(group: Any, names: dict[nn.Module, str], root: nn.Module, widths: tuple[dict[str, int], dict[str, int], set[str]]) -> tuple[str, list[list[int]]]:
    """The group's pruning units as lists of root channel indices: heads, norm groups, gated pairs or channels."""
    head_dims, norm_sizes, gated = widths
    width = width_of(root, "out")
    parent = names[root].rsplit(".", 1)[0]
    if names[root].endswith((".to_q", ".to_k", ".to_v")) and parent in head_dims:
        hd = head_dims[parent]
        return "heads", [list(range(h * hd, (h + 1) * hd)) for h in range(width // hd)]
    if names[root] in gated:
        half = width // 2
        return "gated_pairs", [[i, half + i] for i in range(half)]
    sizes = {norm_sizes[names[d.target.module]] for d, _ in group if isinstance(d.target.module, nn.GroupNorm)}
    if sizes:
        size = math.lcm(*sizes)
        return "norm_groups", [list(range(g * size, (g + 1) * size)) for g in range(width // size)]
    return "channels", [[i] for i in range(width)]


def channel_prune(unet: nn.Module, ratio: float, importance: str = "magnitude",
                  block_plan: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of ``unet`` (block surgery, if any, already applied) with torch-pruning; return it and its plan.

    ``unet`` itself is not touched. Random importance draws from torch's global RNG: seed it first.
    """
    import torch_pruning as tp

    ratio = check_ratio(ratio)
    scorer = _importance(importance)
    model = copy.deepcopy(unet).eval()
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    model.requires_grad_(True)  # torch-pruning traces the autograd graph: a frozen copy would have none
    names = {m: n for n, m in model.named_modules()}
    widths = width_units(model)
    internal = internal_layers(model)
    frozen = [m for m, n in names.items() if isinstance(m, WEIGHTED) and n not in internal]
    inputs = example_inputs(model)
    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, forward_fn=_forward, verbose=False)
    selected = []
    for group in graph.get_all_groups(ignored_layers=frozen, root_module_types=list(WEIGHTED)):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        kind, units = _units(group, names, root, widths)
        n_remove = math.floor(ratio * len(units))
        if n_remove == 0:
            continue
        with torch.no_grad():
            scores = scorer(group)
        if scores is None:  # no layer of a type the importance scores
            continue
        unit_scores = [float(scores[u].mean()) for u in (torch.tensor(u) for u in units)]
        removed = sorted(sorted(range(len(units)), key=lambda u: (unit_scores[u], u))[:n_remove])
        selected.append((root, handler, kind, units, removed))
    seen: set[tuple[str, str]] = set()
    groups = []
    for root, handler, kind, units, removed in selected:
        idxs = sorted(i for u in removed for i in units[u])
        group = graph.get_pruning_group(root, handler, idxs)
        layers: dict[tuple[str, str], tuple[int, set[int]]] = {}
        for dep, dep_idxs in group:
            module = dep.target.module
            if module not in names:  # torch-pruning's nodes for reshapes, adds, splits: no weights
                continue
            dim = "out" if isinstance(module, NORMS) or graph.is_out_channel_pruning_fn(dep.handler) else "in"
            key = (names[module], dim)
            size, pruned = layers.get(key, (width_of(module, dim), set()))
            layers[key] = (size, pruned | {int(i) for i in dep_idxs})
        if seen & set(layers):
            raise PlanError(f"torch-pruning put {sorted(seen & set(layers))} in two groups; this UNet's layout is not supported")
        seen |= set(layers)
        groups.append({
            "root": names[root], "kind": kind, "units": len(units), "unit_size": len(units[0]), "removed_units": removed,
            "layers": [{"name": n, "dim": d, "size": size, "kept": sorted(set(range(size)) - pruned)}
                       for (n, d), (size, pruned) in sorted(layers.items())],
        })
        group.prune()
    fix_stale_ints(model, widths)
    for n, p in model.named_parameters():
        p.requires_grad_(flags.get(n, False))
    config = base_config(unet)
    plan = {
        "kind": CHANNEL_PLAN_KIND,
        "version": CHANNEL_PLAN_VERSION,
        "architecture_hash": architecture_hash(config),
        "base_config": config,
        "after_blocks": list(block_plan["removed"]) if block_plan else [],
        "ratio": ratio,
        "importance": importance,
        "torch_pruning": tp.__version__,
        "params": {"before": _count(unet), "after": _count(model)},
        "groups": groups,
    }
    with torch.no_grad():
        out = _forward(model, inputs)
    if out.shape != inputs["sample"].shape:
        raise PlanError(f"the channel-pruned UNet returns {tuple(out.shape)} for input {tuple(inputs['sample'].shape)}")
    return model, plan


def make_channel_plan(unet: nn.Module, ratio: float, importance: str = "magnitude",
                      block_plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel plan for ``unet`` at ``ratio`` (``unet`` is left as it is; replay with ``core.replay.apply_channel_plan``)."""
    return channel_prune(unet, ratio, importance, block_plan)[1]


def _count(unet: nn.Module) -> int:
    return sum(p.numel() for p in unet.parameters())


