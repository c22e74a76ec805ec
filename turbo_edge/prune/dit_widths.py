"""Head / FFN plans for a video DiT (the wan family): which attention heads and feed-forward channels each kept block
keeps, chosen by importance, written as a replayable plan (``spec.plan``, kind ``head_ffn_plan``; replay:
``core.dit_replay``).

Per kept block, ``floor(ratio * H)`` of the self-attention's heads, as many of the cross-attention's, and
``floor(ratio * F)`` feed-forward hidden channels go, the least important first (ties: the lower index), so every
block loses the same share and no width another block sees changes (the residual stream, ``to_out``'s output,
``ffn.net.2``'s output stay). Importance:

- ``activation`` (measured): a head's energy in the attention output, ``sum_t ||o_t,h W_out,h^T||^2`` (its
  contribution through ``to_out.0``), and a channel's, ``sum_t a_t,j^2 ||W_2[:, j]||^2``, over calibration calls;
- ``magnitude`` / ``l1``: weights only: a head's q / k / v rows and ``to_out`` columns (sum of squares / of absolute
  values); a channel's group through torch-pruning's ``GroupMagnitudeImportance`` (p = 2 / 1);
- ``random``: seeded, an ablation baseline.

Which layers an FFN channel couples is found by torch-pruning's dependency graph (``DependencyGraph``, traced on a
tiny forward of the transformer itself): every group must be exactly ``ffn.net.0.proj`` (outputs) and ``ffn.net.2``
(inputs), or the plan is refused, so a diffusers change that routes the hidden width elsewhere fails here rather than
in replay. Heads are not left to torch-pruning: traced through Wan's attention it couples q, k, v and ``to_out`` but
treats ``norm_q`` / ``norm_k``'s weight as a loose parameter, so its pruned model fails in ``RMSNorm`` (weight and
``normalized_shape`` disagree), and it has no notion of the across-heads statistic.

That statistic: Wan normalises q (and k) by the RMS over all heads' channels at once. With heads K of H kept, replay
folds a factor c into the kept norm weight (``core.dit_replay``); c is the weighted least-squares fit of the per-token
ratio ``rho_t = rms_K(x_t) / rms_H(x_t)`` over the calibration tokens, weighted by ``||x_t w / rms_K(x_t)||^2`` (the
norm of what the factor multiplies), so ``x w c / rms_K`` is the closest single-factor match of the unpruned
``x w / rms_H``. It is exact when ``rho`` is the same for every token (e.g. removed heads that carry no energy), and
the calibration calls are needed for it whatever the importance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from turbo_edge.core import dit_replay
from turbo_edge.core.denoiser import base_module, call_denoiser
from turbo_edge.spec.errors import PlanError
from turbo_edge.spec.plan import CHANNEL_IMPORTANCES, HEAD_FFN_PLAN_KIND, HEAD_FFN_PLAN_VERSION, architecture_hash, check_ratio

ATTENTIONS = ("attn1", "attn2")
FFN_GROUP = (("ffn.net.0.proj", "out"), ("ffn.net.2", "in"))

Call = dict[str, Any]  # {"sample", "timestep", "text", "guidance" (or None)}: one denoiser call in the common signature


def _call(module: nn.Module, call: Call) -> torch.Tensor:
    return call_denoiser(module, call["sample"], call["timestep"], call["text"], call.get("guidance"))


class _Recorder:
    """Forward hooks on every kept block: per-token, per-head q / k energies (plain and norm-weighted) and, for the
    activation importance, each head's and each FFN channel's output energy."""

    def __init__(self, blocks: nn.ModuleList, measure: bool) -> None:
        self.qk: dict[tuple[int, str, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.heads: dict[tuple[int, str], torch.Tensor] = {}
        self.ffn: dict[int, torch.Tensor] = {}
        self.handles = []
        for i, block in enumerate(blocks):
            for name in ATTENTIONS:
                attn = getattr(block, name)
                for which, proj, norm in (("q", attn.to_q, attn.norm_q), ("k", attn.to_k, attn.norm_k)):
                    self.handles.append(proj.register_forward_hook(self._qk_hook((i, name, which), attn.heads, norm)))
                if measure:
                    self.handles.append(attn.to_out[0].register_forward_pre_hook(self._head_hook((i, name), attn.heads)))
            if measure:
                self.handles.append(block.ffn.net[2].register_forward_pre_hook(self._ffn_hook(i)))

    def _qk_hook(self, key: tuple[int, str, str], heads: int, norm: nn.RMSNorm) -> Any:
        def hook(_m: nn.Module, _args: Any, out: torch.Tensor) -> None:
            x2 = out.detach().double().reshape(-1, heads, out.shape[-1] // heads) ** 2
            w2 = (norm.weight.detach().double() ** 2).reshape(heads, -1) if norm.weight is not None else torch.ones_like(x2[0])
            self.qk.setdefault(key, []).append((x2.sum(-1), (x2 * w2).sum(-1)))
        return hook

    def _head_hook(self, key: tuple[int, str], heads: int) -> Any:
        def hook(m: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
            o = args[0].detach().reshape(-1, heads, m.in_features // heads)
            w = m.weight.detach().reshape(m.out_features, heads, -1)
            energy = torch.stack([(o[:, h] @ w[:, h].T).double().pow(2).sum() for h in range(heads)])
            self.heads[key] = self.heads.get(key, 0) + energy
        return hook

    def _ffn_hook(self, i: int) -> Any:
        def hook(_m: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
            a = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            self.ffn[i] = self.ffn.get(i, 0) + a.pow(2).sum(0)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def energies(self, key: tuple[int, str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self.qk[key]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def norm_factor(energy: torch.Tensor, weighted: torch.Tensor, kept: list[int], head_dim: int, eps: float) -> float:
    """The factor c for one norm (module doc), from per-token, per-head energies [T, H] of the projection's output
    (sums of x^2 over each head's channels, plain and weighted by the norm's squared weight) and the kept heads: the
    weighted least-squares fit of rho_t = rms_K(x_t) / rms_H(x_t), RMSNorm's eps included."""
    ms_all = energy.sum(1) / (energy.shape[1] * head_dim)
    ms_kept = energy[:, kept].sum(1) / (len(kept) * head_dim)
    rho = torch.sqrt((ms_kept + eps) / (ms_all + eps))
    u2 = weighted[:, kept].sum(1) / (ms_kept + eps)
    total = float(u2.sum())
    return float((u2 * rho).sum() / total) if total > 0 else 1.0


def _head_magnitude(attn: nn.Module, p: int) -> torch.Tensor:
    """Each head's q / k / v rows and to_out columns: sum of |w|^p."""
    heads = attn.heads
    total = torch.zeros(heads, dtype=torch.float64)
    for proj in (attn.to_q, attn.to_k, attn.to_v):
        w = proj.weight.detach().double().abs().pow(p).reshape(heads, -1).sum(1)
        b = proj.bias.detach().double().abs().pow(p).reshape(heads, -1).sum(1) if proj.bias is not None else 0
        total += w + b
    out = attn.to_out[0].weight.detach().double().abs().pow(p)
    return total + out.reshape(out.shape[0], heads, -1).sum((0, 2))


def _lowest(scores: torch.Tensor | np.ndarray, n: int) -> list[int]:
    """The ``n`` lowest-scoring indices (ties: the lower index first), sorted."""
    s = np.asarray(scores, dtype=np.float64)
    return sorted(sorted(range(len(s)), key=lambda i: (s[i], i))[:n])


def _example_call(transformer: nn.Module, guidance: bool) -> Call:
    """A tiny forward for torch-pruning's trace: one patch-sized frame of 2 x 2 tokens, two text tokens."""
    cfg = transformer.config
    p_t, p_h, p_w = (int(v) for v in cfg.patch_size)
    ref = next(transformer.parameters())
    call: Call = {"sample": torch.randn(1, int(cfg.in_channels), p_t, 2 * p_h, 2 * p_w, dtype=ref.dtype),
                  "timestep": torch.tensor([500.0]), "text": torch.randn(1, 2, int(cfg.text_dim), dtype=ref.dtype), "guidance": None}
    if guidance:
        from turbo_edge.core.denoiser import GUIDANCE_KEY

        call["guidance"] = torch.randn(1, int(cfg[GUIDANCE_KEY]), dtype=ref.dtype)
    return call


class FfnGroups:
    """torch-pruning's dependency graph of the transformer, asked only about each block's feed-forward hidden width."""

    def __init__(self, transformer: nn.Module, guidance: bool) -> None:
        import torch_pruning as tp

        self.tp = tp
        self.names = {m: n for n, m in transformer.named_modules()}
        self.blocks = base_module(transformer).blocks
        prefix = next(n for m, n in self.names.items() if m is self.blocks)
        self.prefix = f"{prefix}." if prefix else ""
        flags = {n: p.requires_grad for n, p in transformer.named_parameters()}
        transformer.requires_grad_(True)  # torch-pruning traces the autograd graph
        try:
            example = _example_call(transformer, guidance)
            with torch.enable_grad():
                self.graph = tp.DependencyGraph().build_dependency(transformer, example_inputs=example, forward_fn=_call, verbose=False)
        finally:
            for n, p in transformer.named_parameters():
                p.requires_grad_(flags.get(n, False))

    def group(self, i: int, idxs: list[int]) -> Any:
        return self.graph.get_pruning_group(self.blocks[i].ffn.net[0].proj, self.tp.prune_linear_out_channels, idxs)

    def magnitude(self, i: int, p: int) -> torch.Tensor:
        width = self.blocks[i].ffn.net[0].proj.out_features
        scores = self.tp.importance.GroupMagnitudeImportance(p=p)(self.group(i, list(range(width))))
        return scores.detach().double()

    def check(self, i: int, removed: list[int]) -> None:
        """The group removing ``removed`` from block i's FFN touches exactly ``FFN_GROUP``'s layers, those channels."""
        expected = {(f"{self.prefix}{i}.{name}", dim) for name, dim in FFN_GROUP}
        found: dict[tuple[str, str], set[int]] = {}
        for dep, idxs in self.group(i, removed):
            module = dep.target.module
            if module not in self.names or not isinstance(module, nn.Linear | nn.Conv3d | nn.LayerNorm | nn.RMSNorm):
                continue  # torch-pruning's nodes for reshapes and element-wise ops: no weights
            dim = "out" if self.graph.is_out_channel_pruning_fn(dep.handler) else "in"
            found.setdefault((self.names[module], dim), set()).update(int(v) for v in idxs)
        if set(found) != expected or any(v != set(removed) for v in found.values()):
            raise PlanError(f"torch-pruning couples block {i}'s feed-forward hidden width with {sorted(found)}, not just "
                            f"{sorted(expected)}: this transformer's FeedForward is not the one head / FFN pruning handles")


def make_head_ffn_plan(transformer: nn.Module, ratio: float, calls: Sequence[Call], importance: str = "activation",
                       block_plan: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """The head / FFN plan for ``transformer`` (block surgery, if any, already applied; left unchanged) at ``ratio``,
    measured on ``calls`` (denoiser calls in the common signature: the norm factors always need them)."""
    ratio = check_ratio(ratio)
    if importance not in CHANNEL_IMPORTANCES:
        raise PlanError(f"unknown importance {importance!r} for a head / FFN plan; known: {list(CHANNEL_IMPORTANCES)}")
    if not calls:
        raise PlanError("a head / FFN plan measures the q / k norms' statistics on calibration calls: give at least one")
    base = base_module(transformer)
    config = dit_replay.base_config(base)
    if base.config.get(dit_replay.WIDTH_KEY):
        raise PlanError("this transformer is width-pruned already; make the plan on the unpruned one")
    blocks = base.blocks
    for i, block in enumerate(blocks):
        dit_replay._check_attention(f"blocks.{i}.attn1", block.attn1)
        dit_replay._check_attention(f"blocks.{i}.attn2", block.attn2)
        dit_replay._check_ffn(f"blocks.{i}.ffn", block.ffn)
    heads, ffn = int(config["num_attention_heads"]), int(config["ffn_dim"])
    drop_heads, drop_ffn = math.floor(ratio * heads), math.floor(ratio * ffn)
    if drop_heads == 0 and drop_ffn == 0:
        raise PlanError(f"ratio {ratio} of {heads} heads and {ffn} FFN channels removes nothing: raise it")
    was_training = transformer.training
    transformer.eval()
    recorder = _Recorder(blocks, measure=importance == "activation")
    tokens = 0
    try:
        with torch.no_grad():
            for call in calls:
                _call(transformer, call)
        tokens = sum(int(e[0].shape[0]) for e in recorder.qk[(0, "attn1", "q")])
    finally:
        recorder.close()
        transformer.train(was_training)
    ffn_groups = FfnGroups(transformer, guidance=calls[0].get("guidance") is not None)
    rng = np.random.default_rng(seed)
    p = {"magnitude": 2, "l1": 1}.get(importance)
    entries, removed_params = [], 0
    kept_names = [u for u in (f"blocks.{i}" for i in range(int(config["num_layers"]))) if u not in set((block_plan or {}).get("removed", []))]
    for i, block in enumerate(blocks):
        entry: dict[str, Any] = {"name": f"blocks.{i}", "source": kept_names[i]}
        for name in ATTENTIONS:
            attn = getattr(block, name)
            if importance == "activation":
                scores = recorder.heads[(i, name)]
            elif importance == "random":
                scores = rng.random(heads)
            else:
                scores = _head_magnitude(attn, p)
            gone = _lowest(scores, drop_heads)
            kept = [h for h in range(heads) if h not in set(gone)]
            factors = {}
            for which, norm in (("q", attn.norm_q), ("k", attn.norm_k)):
                energy, weighted = recorder.energies((i, name, which))
                eps = float(norm.eps) if norm.eps is not None else float(torch.finfo(torch.float32).eps)
                factors[f"norm_{which}_scale"] = float(f"{norm_factor(energy, weighted, kept, attn.inner_dim // heads, eps):.8g}")
            entry[name] = {"heads": heads, "kept_heads": kept, **factors,
                           "importance": [float(f"{s:.6g}") for s in np.asarray(scores, dtype=np.float64)]}
            removed_params += _head_params(attn, len(gone))
        if importance == "activation":
            w2 = block.ffn.net[2].weight.detach().double().pow(2).sum(0)
            scores = recorder.ffn[i] * w2
        elif importance == "random":
            scores = rng.random(ffn)
        else:
            scores = ffn_groups.magnitude(i, p)
        gone = _lowest(scores, drop_ffn)
        if gone:
            ffn_groups.check(i, gone)
        entry["ffn"] = {"size": ffn, "kept": [j for j in range(ffn) if j not in set(gone)]}
        removed_params += _ffn_params(block.ffn, len(gone))
        entries.append(entry)
    import torch_pruning as tp

    before = sum(p.numel() for p in transformer.parameters())
    scales = [e[a][k] for e in entries for a in ATTENTIONS for k in ("norm_q_scale", "norm_k_scale")]
    plan = {
        "kind": HEAD_FFN_PLAN_KIND,
        "version": HEAD_FFN_PLAN_VERSION,
        "architecture_hash": architecture_hash(config),
        "base_config": config,
        "after_blocks": list(block_plan["removed"]) if block_plan else [],
        "ratio": ratio,
        "importance": importance,
        "qk_norm": {"statistic": "rms over all heads (rms_norm_across_heads)", "handling": "least-squares factor folded into the kept norm weights",
                    "factor_range": [min(scales), max(scales)]},
        "ffn_group": [f"{name} ({dim})" for name, dim in FFN_GROUP],
        "torch_pruning": tp.__version__,
        "calibration": {"calls": len(calls), "tokens": tokens, "seed": seed},
        "params": {"before": before, "after": before - removed_params},
        "blocks": entries,
    }
    return plan


def _head_params(attn: nn.Module, n: int) -> int:
    """Parameters ``n`` heads of ``attn`` hold: their q / k / v rows (with bias), to_out columns and norm weights."""
    d = attn.inner_dim // attn.heads
    rows = sum(p.in_features + (1 if p.bias is not None else 0) for p in (attn.to_q, attn.to_k, attn.to_v))
    norms = sum(1 for norm in (attn.norm_q, attn.norm_k) if norm.weight is not None)
    return n * d * (rows + attn.to_out[0].out_features + norms)


def _ffn_params(ffn: nn.Module, n: int) -> int:
    proj = ffn.net[0].proj
    return n * (proj.in_features + (1 if proj.bias is not None else 0) + ffn.net[2].out_features)


def head_ffn_prune(transformer: nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> nn.Module:
    """A pruned copy of ``transformer`` (``plan`` replayed; the original is left as it is)."""
    import copy

    return dit_replay.apply_head_ffn_plan(copy.deepcopy(transformer), plan, block_plan)
