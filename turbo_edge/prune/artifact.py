"""The pruned directory: the student layout + ``pruning_plan.json``, written atomically, loaded by plan replay.

Imports no pruning training code: ``load_teacher`` (core.pipeline_io) can call ``load_pruned_unet`` for any
directory that holds a plan, so the sampler, the evaluator and export run pruned students unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from turbo_edge.core.fsutil import replace_dir
from turbo_edge.prune.plan import PLAN_FILE, PlanError, load_pruned_unet, read_plan, write_plan


def save_pruned(model: Any, plan: dict[str, Any], out: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``model`` (a T2VModel whose UNet went through ``apply_plan``) and its plan as one directory.

    ``save_model`` is atomic for the model alone; the plan must land in the same rename, else a crash between
    the two would leave weights that nothing can load. So: save to a staging dir, add the plan, then swap.
    """
    from turbo_edge.core.pipeline_io import save_model

    out = Path(out)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, staging, meta=meta)
    write_plan(plan, staging / PLAN_FILE)
    replace_dir(staging, out)
    return out


def load_pruned(name_or_path: str | os.PathLike[str], torch_dtype: Any = None) -> Any:
    """Load a pruned directory as a T2VModel: components as ``load_teacher`` loads them, the UNet rebuilt from its plan."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from turbo_edge.core.pipeline_io import META_FILE, T2VModel, check_layout, resolve_model_path

    path = resolve_model_path(name_or_path)
    check_layout(path)
    if not (path / PLAN_FILE).is_file():
        raise PlanError(f"{path} has no {PLAN_FILE}: it is not a pruned model directory")
    import torch

    # Explicit dtype, as load_teacher does: transformers 5 would otherwise keep the checkpoint's (maybe float16).
    dtype = torch_dtype if torch_dtype is not None else torch.float32
    unet = load_pruned_unet(path / "unet", read_plan(path / PLAN_FILE), dtype)
    vae = AutoencoderKL.from_pretrained(path / "vae", use_safetensors=True, torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True, dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
    meta_file = path / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return T2VModel(unet, vae, text_encoder, tokenizer, scheduler, path=path, meta=meta).eval()
