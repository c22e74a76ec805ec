"""The student: the teacher's UNet plus a guidance-scale embedding, trained through LoRA (peft) or in full.

The w-embedding enters through ``time_cond_proj_dim`` (diffusers' ``TimestepEmbedding.cond_proj``), so one UNet
call per step replaces classifier-free guidance's two. ``cond_proj`` starts at zero: the untrained student is
exactly the teacher at any w.
"""

from __future__ import annotations

from typing import Any

import torch

from turbo_edge.core.models import unet_from_config
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.spec.plan import PLAN_FILE

# Layers LoRA adapts (T2V-Turbo: every Linear / Conv in attention, resnets and temporal convs; diffusers' LCM
# script adds time_emb_proj). A regex on full module names, because the temporal convs' ``conv1`` is a
# Sequential whose Conv3d sits at index 2 (3 for conv2..conv4).
LORA_TARGET_REGEX = (
    r".*(\.to_q|\.to_k|\.to_v|\.to_out\.0|\.proj_in|\.proj_out|\.ff\.net\.0\.proj|\.ff\.net\.2"
    r"|resnets\.\d+\.conv1|resnets\.\d+\.conv2|\.time_emb_proj|temp_convs\.\d+\.conv1\.2|temp_convs\.\d+\.conv[234]\.3)$"
)


def build_student_unet(teacher_unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """A UNet3DConditionModel with the teacher's weights and a zero-initialised guidance embedding input."""

    # Private keys (``_use_default_values`` among them) would make diffusers ignore the new field.
    config = {k: v for k, v in teacher_unet.config.items() if not k.startswith("_")}
    config["time_cond_proj_dim"] = w_embedding_dim
    student = unet_from_config(config)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("time_embedding.cond_proj") for k in missing):
        raise ValueError(f"teacher UNet does not fit the student: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student


def attach_guidance_embedding(unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """``build_student_unet`` in place: the teacher's own UNet gains the zero-initialised ``cond_proj``, no copy.

    The time embedding is rebuilt around the teacher's own ``linear_1`` / ``linear_2`` so ``cond_proj`` sits where
    a UNet built from the student's config has it (after ``linear_1``): parameter order, hence optimizer state in
    checkpoints, is the same as with a separate student. Without ``timestep_cond`` the layer is never called, so
    the UNet still computes exactly the teacher.
    """
    from diffusers.models.embeddings import TimestepEmbedding

    old = unet.time_embedding
    if getattr(old, "cond_proj", None) is not None:
        raise ValueError("this UNet already has a guidance embedding (time_cond_proj_dim): it is a student, not a teacher")
    new = TimestepEmbedding(old.linear_1.in_features, old.linear_1.out_features, act_fn=unet.config.act_fn, cond_proj_dim=w_embedding_dim)
    new.linear_1, new.linear_2 = old.linear_1, old.linear_2
    if type(new.act) is not type(old.act) or old.post_act is not None:
        raise ValueError("the teacher's time embedding is not the one UNet3DConditionModel builds; use teacher_weights copy")
    ref = old.linear_1.weight
    new.cond_proj = new.cond_proj.to(device=ref.device, dtype=ref.dtype).requires_grad_(ref.requires_grad)
    torch.nn.init.zeros_(new.cond_proj.weight)
    unet.time_embedding = new
    unet.register_to_config(time_cond_proj_dim=w_embedding_dim)
    return unet


def load_init_student(path: str, teacher_unet: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """The UNet of a student distilled earlier from this teacher, checked to fit before any training."""

    model = load_teacher(path)
    if model.card.kind != "student" or (model.path / PLAN_FILE).is_file():
        raise ValueError(f"init_student {path} is a {model.card.kind}, not an (unpruned) distilled student")
    got = model.unet.config.get("time_cond_proj_dim")
    if got != w_embedding_dim:
        raise ValueError(f"init_student {path} has a {got}-dim guidance embedding; set w_embedding_dim to {got}")
    ignore = ("time_cond_proj_dim",)
    diff = sorted(k for k, v in teacher_unet.config.items() if not k.startswith("_") and k not in ignore and model.unet.config.get(k) != v)
    if diff:
        raise ValueError(f"init_student {path} was not distilled from this teacher's architecture (differs in {diff})")
    return model.unet.float()


def add_lora(unet: torch.nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> torch.nn.Module:
    """Wrap with peft LoRA (UNet3DConditionModel has no ``add_adapter``; ``get_peft_model`` works).

    The new ``cond_proj`` layer trains in full (``modules_to_save``): it starts at zero, LoRA on it would not learn.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
        target_modules=LORA_TARGET_REGEX, modules_to_save=["cond_proj"], init_lora_weights="gaussian",
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
