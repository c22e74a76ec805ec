"""The pruned directory: the student layout + ``pruning_plan.json`` (blocks) and / or ``channel_plan.json``
(widths), written atomically, loaded by plan replay (blocks first, then widths).

Imports no pruning training code: ``load_teacher`` (core.pipeline_io) can call ``load_pruned_unet`` for any
directory that holds a plan, so the sampler, the evaluator and export run pruned students unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from turbo_edge.core.fsutil import staged_dir
from turbo_edge.prune.plan import CHANNEL_PLAN_FILE, PLAN_FILE, PlanError, load_pruned_unet, read_plans, write_plan


def save_pruned(model: Any, plan: dict[str, Any] | None, out: str | os.PathLike[str], meta: dict[str, Any],
                channel_plan: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a T2VModel whose UNet went through ``apply_plan`` and / or ``apply_channel_plan``) and its
    plan(s) as one directory.

    ``save_model`` is atomic for the model alone; the plans must land in the same rename, else a crash between
    them would leave weights that nothing can load. So: save to a staging dir, add the plans, then swap.
    """
    from turbo_edge.core.pipeline_io import save_model

    if plan is None and channel_plan is None:
        raise PlanError("a pruned directory needs a block plan, a channel plan or both")
    out = Path(out)
    with staged_dir(out) as staging:
        save_model(model, staging, meta=meta)
        if plan is not None:
            write_plan(plan, staging / PLAN_FILE)
        if channel_plan is not None:
            write_plan(channel_plan, staging / CHANNEL_PLAN_FILE)
    return out


def load_pruned(name_or_path: str | os.PathLike[str], torch_dtype: Any = None) -> Any:
    """Load a pruned directory as a T2VModel: components as ``load_teacher`` loads them, the UNet rebuilt from its plan."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from turbo_edge.core.pipeline_io import META_FILE, T2VModel, check_layout, resolve_model_path

    path = resolve_model_path(name_or_path)
    check_layout(path)
    plan, channel_plan = read_plans(path)
    if plan is None and channel_plan is None:
        raise PlanError(f"{path} has neither {PLAN_FILE} nor {CHANNEL_PLAN_FILE}: it is not a pruned model directory")
    import torch

    # Explicit dtype, as load_teacher does: transformers 5 would otherwise keep the checkpoint's (maybe float16).
    dtype = torch_dtype if torch_dtype is not None else torch.float32
    unet = load_pruned_unet(path / "unet", plan, dtype, channel_plan=channel_plan)
    vae = AutoencoderKL.from_pretrained(path / "vae", use_safetensors=True, torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True, dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
    meta_file = path / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return T2VModel(unet, vae, text_encoder, tokenizer, scheduler, path=path, meta=meta).eval()
