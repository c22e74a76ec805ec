"""``turbo-edge bench --model``: a diffusers model directory (teacher, student or pruned) in PyTorch eager.

Stages as the PyTorch samplers run them (``core.sampling`` / ``core.student_sampling``): the text encoder at the
batch (twice under CFG: prompts and the empty prompt), one UNet call (a teacher's CFG call at 2 x batch rows), the
VAE decode of one batch of videos. FLOPs by ``core.flops.count_flops``. A student's end to end is its few-step
sampler, measured. A teacher's 50-step CFG video takes long on a CPU, so its per-video figures are composed from the
stage medians (text encoder x 2 + steps x CFG UNet call + VAE decode) and ``e2e_runs`` real videos (default one)
check the composition: their relative difference is in the row.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from turbo_edge.bench.common import finish_row, peak_rss_mb, stage_entry, time_calls
from turbo_edge.core.flops import count_flops
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.sampling import check_prompts, decode, encode_text, generate_teacher, latent_shape
from turbo_edge.core.student_sampling import generate_student, sampler_contract, student_timesteps
from turbo_edge.spec import host, param
from turbo_edge.spec.configs import BenchConfig
from turbo_edge.spec.noise import normal

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(precision: str) -> AbstractContextManager:
    """fp32 weights, matmuls and convolutions in ``precision`` (CPU autocast), as PyTorch runs mixed precision."""
    return torch.autocast("cpu", dtype=AUTOCAST.get(precision, torch.bfloat16), enabled=precision in AUTOCAST)


def bench_model(cfg: BenchConfig, precision: str, threads: int, model: Any = None) -> dict[str, Any]:
    """One results row (with its stages) for the model directory ``cfg.model`` at ``precision``."""
    torch.set_num_threads(threads)
    model = model or load_teacher(cfg.model)
    kind = model.card.kind
    teacher = kind == "teacher"
    b = cfg.batch
    prompts = [cfg.prompt] * b
    check_prompts(model, prompts)
    shape = latent_shape(model, cfg.frames, cfg.height, cfg.width)
    if teacher:
        steps = cfg.steps or 50
        guidance = float(cfg.guidance if cfg.guidance is not None else model.card.default_guidance)
        timestep, w_emb = int(model.scheduler.config.num_train_timesteps) - 1, None
    else:
        sampler = sampler_contract(model)
        steps = cfg.steps or int(sampler.default_steps)
        timestep = int(student_timesteps(sampler, steps)[0])
        guidance = float(cfg.guidance if cfg.guidance is not None else sampler.guidance)
        w_dim = sampler.w_embedding_dim
        w_emb = None if w_dim is None else torch.from_numpy(param.guidance_embedding(guidance, int(w_dim)))
    rows = 2 * b if teacher else b
    scale = 2 ** (len(model.vae.config.block_out_channels) - 1)
    frames, height, width = shape[1], shape[2] * scale, shape[3] * scale

    with torch.no_grad(), _autocast(precision):
        cond = encode_text(model, prompts)
        text = torch.cat([encode_text(model, [""] * b), cond]) if teacher else cond
        x = torch.from_numpy(np.stack([normal(cfg.seed, i, shape) for i in range(rows)]))
        t = torch.full((rows,), timestep, dtype=torch.long)
        w = None if w_emb is None else w_emb.expand(rows, -1)
        latents = torch.from_numpy(np.stack([normal(cfg.seed + 1, i, shape) for i in range(b)]))

        calls = {
            "text_encoder": lambda: encode_text(model, prompts),
            "unet": lambda: model.denoise(x, t, text, w),
            "vae_decoder": lambda: decode(model, latents),
        }
        stats = {name: time_calls(fn, cfg.warmup, cfg.runs) for name, fn in calls.items()}
        flops = {name: count_flops(fn) for name, fn in calls.items()}

        if teacher:
            def video() -> Any:
                return generate_teacher(model, prompts, steps=steps, guidance=guidance, seed=cfg.seed, frames=frames, height=height,
                                        width=width, batch_size=b)
        else:
            def video() -> Any:
                return generate_student(model, prompts, steps=steps, guidance=guidance, seed=cfg.seed, batch_size=b,
                                        video_size=(frames, height, width))
        e2e = time_calls(video, 0 if teacher else cfg.warmup, cfg.e2e_runs or (1 if teacher else cfg.runs))

    peak = host.cpu_peak_flops(precision if precision in AUTOCAST else "fp32", cores=min(threads, host.available_cores()))
    stages = [
        stage_entry("text_encoder", stats["text_encoder"], 2 if teacher else 1, flops["text_encoder"], peak),
        stage_entry("unet", stats["unet"], steps, flops["unet"], peak),
        stage_entry("vae_decoder", stats["vae_decoder"], 1, flops["vae_decoder"], peak),
    ]
    row = {
        "row": f"pytorch {kind} {precision}", "source": "model", "model": str(model.path or cfg.model), "model_kind": kind,
        "sampler": "ddim_cfg" if teacher else "consistency", "backend": "pytorch", "precision": precision, "steps": steps, "batch": b,
        "unet_rows": rows, "cfg": teacher, "guidance": guidance, "threads": threads, "timing": "host clock (perf_counter)",
        "torch": torch.__version__, "video": {"frames": frames, "height": height, "width": width},
        "input_shapes": {"text_encoder": {"input_ids": [b, int(text.shape[1])]},
                         "unet": {"sample": list(x.shape), "timestep": [rows], "encoder_hidden_states": list(text.shape),
                                  **({"timestep_cond": list(w.shape)} if w is not None else {})},
                         "vae_decoder": {"latent": [b * shape[1], shape[0], shape[2], shape[3]]}},
    }
    finish_row(row, stages, e2e, composed_only=teacher)
    row["peak_rss_mb"] = peak_rss_mb()
    row["device_memory_mb"] = None
    return row


__all__ = ["bench_model"]
