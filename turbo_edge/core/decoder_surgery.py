"""What the pruned decoders of both families share (``core.pruned_decoder``, ``core.pruned_wan_decoder``): the
parameter-free module a removed unit becomes, and the module surgery that puts it in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Skip(nn.Module):
    """What a removed unit becomes: the identity, with the resnet / attention call signature."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        return x


def set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    owner._modules[leaf] = module  # ModuleList / ModuleDict / attribute alike


def skip_units(decoder: nn.Module, removed: list[str], allowed: list[str], what: str = "decoder") -> None:
    """Replace each unit of ``removed`` by a ``Skip``, refused in one line unless all are among ``allowed`` (the
    decoder's removable units)."""
    bad = [u for u in removed if u not in allowed]
    if bad:
        raise ValueError(f"decoder plan names {bad}, which this {what} cannot remove; removable units: {allowed}")
    for unit in removed:
        set_module(decoder, unit, Skip())


def plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
