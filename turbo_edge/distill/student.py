"""The student: the teacher's UNet plus a guidance-scale embedding, trained through LoRA (peft) or in full.

The w-embedding enters through ``time_cond_proj_dim`` (diffusers' ``TimestepEmbedding.cond_proj``), so one UNet
call per step replaces classifier-free guidance's two. ``cond_proj`` starts at zero: the untrained student is
exactly the teacher at any w.
"""

from __future__ import annotations

from typing import Any

import torch

from turbo_edge.core.denoiser import FAMILIES, family_of
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.spec.plan import PLAN_FILE

# The UNet family's LoRA layers (kept under this name for callers that predate families).
LORA_TARGET_REGEX = FAMILIES["UNet3DConditionModel"].lora_targets


def build_student_unet(teacher_unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """A separate student: the teacher's denoiser (any family) with a zero-initialised guidance embedding input."""
    return family_of(teacher_unet).build_student(teacher_unet, w_embedding_dim)


def attach_guidance_embedding(unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """``build_student_unet`` in place: the teacher's own denoiser gains the zero-initialised embedding, no copy."""
    return family_of(unet).attach_guidance_embedding(unet, w_embedding_dim)


def load_init_student(path: str, teacher_unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """The UNet of a student distilled earlier from this teacher, checked to fit before any training."""

    model = load_teacher(path)
    if model.card.kind != "student" or (model.path / PLAN_FILE).is_file():
        raise ValueError(f"init_student {path} is a {model.card.kind}, not an (unpruned) distilled student")
    got = model.family.geometry(model.denoiser).guidance_dim
    if got != w_embedding_dim:
        raise ValueError(f"init_student {path} has a {got}-dim guidance embedding; set w_embedding_dim to {got}")
    if type(model.denoiser) is not type(teacher_unet):
        raise ValueError(f"init_student {path} is a {type(model.denoiser).__name__}, the teacher a {type(teacher_unet).__name__}")
    ignore = ("time_cond_proj_dim", "turbo_edge_guidance_dim")
    diff = sorted(k for k, v in teacher_unet.config.items() if not k.startswith("_") and k not in ignore and model.denoiser.config.get(k) != v)
    if diff:
        raise ValueError(f"init_student {path} was not distilled from this teacher's architecture (differs in {diff})")
    return model.denoiser.float()


def add_lora(unet: torch.nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> torch.nn.Module:
    """Wrap with peft LoRA on the family's ``lora_targets`` (UNet3DConditionModel has no ``add_adapter``;
    ``get_peft_model`` works for every family).

    The new ``cond_proj`` layer trains in full (``modules_to_save``): it starts at zero, LoRA on it would not learn.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
        target_modules=family_of(unet).lora_targets, modules_to_save=["cond_proj"], init_lora_weights="gaussian",
    )
    return get_peft_model(unet, config)


def base_weights(module: torch.nn.Module) -> dict[int, int]:
    """Storage ``data_ptr`` -> bytes of every parameter and buffer (a storage counted once however many share it)."""
    out = {}
    for t in [*module.parameters(), *module.buffers()]:
        storage = t.untyped_storage()
        out[storage.data_ptr()] = storage.nbytes()
    return out


def merge_lora(unet: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA weights into the base layers and return the plain diffusers UNet."""
    if hasattr(unet, "merge_and_unload"):
        return unet.merge_and_unload()
    return unet


def trainable_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in unet.parameters() if p.requires_grad]


def describe(unet: torch.nn.Module) -> dict[str, Any]:
    total = sum(p.numel() for p in unet.parameters())
    trainable = sum(p.numel() for p in trainable_parameters(unet))
    return {"parameters": total, "trainable": trainable, "trainable_fraction": trainable / max(total, 1)}
