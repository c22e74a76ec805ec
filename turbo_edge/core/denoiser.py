"""The denoiser plug point: what the stages need from a video denoiser, behind one small interface.

Today every model is a diffusers ``UNet3DConditionModel`` (ModelScope T2V, zeroscope, the builtin teacher). A
video DiT (diffusers' ``WanTransformer3DModel``, flow matching) is the next family: it becomes one subclass here
plus, per stage, the pieces listed in ``docs/architecture.md`` ("Adding a denoiser family"). A family provides:

- ``load``: the module from a model directory's ``unet/`` (or ``transformer/``) folder, pruning plans replayed;
- ``forward``: one call in the common signature ``(sample [B, C, F, h, w], timestep [B], text [B, L, D],
  guidance embedding [B, W] or None) -> prediction like sample``: the sampler, the distiller's teacher and
  student calls, the pruner and the export wrapper all call through it;
- ``geometry``: latent channels, text width and guidance-embedding width, which the export contract is built from;
- ``removable_units`` / ``apply_plan``: the units a pruning plan may name, and the surgery that removes them;
- ``enable_gradient_checkpointing``: recompute activations in the backward pass (a family without it refuses).

The parameterisation (prediction type, schedule) is not the family's: it comes from the scheduler config and
``spec.param``, so a flow-matching family adds its conversions there.
"""

from __future__ import annotations

import os
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from turbo_edge.core import replay
from turbo_edge.core.models import attach_temporal_position, own_config_keys_quiet
from turbo_edge.spec import plan as plans


@dataclass(frozen=True)
class Geometry:
    """The shapes a denoiser call takes, as the export contract and the runtime need them."""

    latent_channels: int
    out_channels: int
    text_dim: int
    guidance_dim: int | None  # a distilled student's timestep_cond width; None for a teacher


class DenoiserFamily(ABC):
    name: ClassVar[str]
    diffusers_class: ClassVar[str]  # the class model_index.json names for the denoiser
    folder: ClassVar[str]  # the component folder in the model directory

    @abstractmethod
    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module: ...

    @abstractmethod
    def forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor: ...

    @abstractmethod
    def geometry(self, module: torch.nn.Module) -> Geometry: ...

    @abstractmethod
    def removable_units(self, config: dict[str, Any]) -> list[str]: ...

    @abstractmethod
    def apply_plan(self, module: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module: ...

    def enable_gradient_checkpointing(self, module: torch.nn.Module) -> int:
        """Checkpoint the denoiser's activations; returns how many units recompute. A family that cannot refuses."""
        raise ValueError(f"the {self.name} denoiser family has no gradient checkpointing; train it with gradient_checkpointing false")


def _checkpointed_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """A block's own forward, under non-reentrant activation checkpointing while gradients are recorded.

    Bound per instance (``types.MethodType``), so ``copy.deepcopy`` rebinds it to the copy; the class's forward
    runs either way. The RNG state is stashed and replayed (torch's default), so the temporal convs' dropout
    draws the same masks in the recomputation and the global RNG stream is the one an unchecked run sees.
    """
    forward = type(self).forward
    if torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)
    return forward(self, *args, **kwargs)


def checkpoint_blocks(blocks: list[torch.nn.Module]) -> int:
    for block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)
    return len(blocks)


class UNet3DFamily(DenoiserFamily):
    """diffusers ``UNet3DConditionModel``: epsilon / v-prediction video UNets (ModelScope T2V, zeroscope)."""

    name = "unet3d"
    diffusers_class = "UNet3DConditionModel"
    folder = "unet"

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        from diffusers import UNet3DConditionModel

        if block_plan is not None or channel_plan is not None:  # a pruned student: rebuild it from its plan(s)
            return replay.load_pruned_unet(Path(path), block_plan, dtype, channel_plan=channel_plan)
        with own_config_keys_quiet():
            unet = UNet3DConditionModel.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)
        return attach_temporal_position(unet)

    def forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        kw = {"timestep_cond": guidance} if guidance is not None else {}
        return module(sample, timestep, encoder_hidden_states=text, return_dict=False, **kw)[0]

    def geometry(self, module: torch.nn.Module) -> Geometry:
        cfg = module.config
        w_dim = cfg.get("time_cond_proj_dim")
        return Geometry(int(cfg.in_channels), int(cfg.out_channels), int(cfg.cross_attention_dim), int(w_dim) if w_dim else None)

    def removable_units(self, config: dict[str, Any]) -> list[str]:
        return plans.removable_units(config)

    def apply_plan(self, module: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module:
        return replay.apply_plan(module, plan)

    def enable_gradient_checkpointing(self, module: torch.nn.Module) -> int:
        """Every down / mid / up block recomputes in the backward pass. diffusers 0.42.1's UNet3DConditionModel has
        ``_supports_gradient_checkpointing = False`` (its 3D blocks carry the flag but never read it), so its
        ``enable_gradient_checkpointing()`` raises; the blocks are wrapped here instead. ``module`` may be a peft
        model around the UNet."""
        unet = module.get_base_model() if hasattr(module, "get_base_model") else module
        blocks = [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]
        return checkpoint_blocks(blocks)


FAMILIES: dict[str, DenoiserFamily] = {f.diffusers_class: f for f in (UNet3DFamily(),)}


def family_for(class_name: str | None) -> DenoiserFamily:
    """The family of a denoiser class named in ``model_index.json``; ``ValueError`` naming the supported ones."""
    if class_name not in FAMILIES:
        raise ValueError(f"denoiser {class_name!r} is not a supported family; turbo-edge handles {sorted(FAMILIES)}")
    return FAMILIES[class_name]
