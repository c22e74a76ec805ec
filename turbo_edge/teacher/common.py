"""What both builtin teachers' trainers share: seeded per-step randomness, the progress bar, the EMA, the loss weight."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def _step_rng(seed: int, step: int, rank: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank, stream])


def _torch_gen(seed: int, step: int, rank: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_step_rng(seed, step, rank, stream).integers(2**62)))


def _object_weight(frames: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weight: 1 on background, ``1 + weight`` where the pixel differs from the border colour."""
    border = torch.cat([frames[..., 0, :], frames[..., -1, :], frames[..., :, 0], frames[..., :, -1]], dim=-1)
    bg = border.median(dim=-1).values[..., None, None]
    is_object = ((frames - bg).abs().amax(dim=-3, keepdim=True) > 0.1).float()
    return 1.0 + weight * is_object


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def _accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


class _Progress:
    def __init__(self, total: int, start: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True)

    def update(self, **metrics: float) -> None:
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def warmup_ema(decay: float):
    """EMA whose decay ramps as (1 + n) / (10 + n) up to ``decay`` (n = updates so far): a plain 0.999 EMA started
    from random weights still carries 13 % of them after 2,000 steps."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(ema_params[0]):  # integer buffers (position ids) are copied
            torch._foreach_copy_(ema_params, params)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def train_autoencoder(cfg: Any, vae: torch.nn.Module, chash: str, desc: str,
                      batch: Callable[[np.random.Generator, int, int], tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Both builtin teachers' autoencoder phase: a resumable loop over ``batch(rng, rank, world_size) -> (pixels,
    per-pixel loss weight)``, object-weighted L1 + L2 reconstruction of a posterior sample plus ``vae_kl_weight`` x KL,
    AdamW with a 100-step warm-up, checkpoints under ``OUT/vae_ckpt`` (the step count is left out of ``chash``:
    extending a finished run is a legitimate resume)."""
    from turbo_edge.core import checkpoint as ckpt

    out = Path(cfg.out)
    ckdir = out / "vae_ckpt"
    accel = _accelerator()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(100))
    start = 0
    last = ckpt.latest_checkpoint(ckdir)
    if last is not None:
        meta = ckpt.load_checkpoint(last, {"vae": vae}, opt, expected_config_hash=chash)
        sched.load_state_dict(meta["lr_sched"])
        start = int(meta["step"])
        log.info("resumed autoencoder training from %s (step %d)", last, start)
    vae, opt = accel.prepare(vae, opt)
    model = accel.unwrap_model(vae)
    rank, ws = accel.process_index, accel.num_processes
    bar = _Progress(cfg.vae_steps, start, desc, accel.is_main_process)
    vae.train()
    for step in range(start, cfg.vae_steps):
        rng = _step_rng(cfg.seed, step, rank, 1)
        pixels, weight = batch(rng, rank, ws)
        posterior = model.encode(pixels).latent_dist
        z = posterior.sample(generator=_torch_gen(cfg.seed, step, rank, 2))
        err = model.decode(z).sample - pixels
        rec = (weight * (err.abs() + err.square())).mean()
        kl = posterior.kl().mean()
        loss = rec + cfg.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        accel.backward(loss)
        accel.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        bar.update(loss=loss.item(), rec=rec.item())
        done = step + 1
        if accel.is_main_process and (done % cfg.log_every == 0 or done == cfg.vae_steps):
            ckpt.log_jsonl(out / "vae_log.jsonl", {"step": done, "loss": loss.item(), "rec": rec.item(), "kl": kl.item(), "time": time.time()})
        if accel.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.vae_steps):
            ckpt.save_checkpoint(ckdir, {"vae": model}, opt, {"step": done, "config_hash": chash, "lr_sched": sched.state_dict()})
    bar.close()
    accel.wait_for_everyone()
    return ckdir


def denoiser_update(cfg: Any, accel: Any, step: int, loss: torch.Tensor, ddp_model: torch.nn.Module, model: torch.nn.Module, ema: Any,
                    opt: torch.optim.Optimizer, sched: Any, bar: _Progress, ckdir: Path, chash: str) -> None:
    """Both builtin teachers' denoiser-phase update after the loss: clipped optimiser step, learning-rate schedule, EMA,
    then the log line (``OUT/unet_log.jsonl``) and the checkpoint (model + EMA + optimizer) when they are due."""
    from turbo_edge.core import checkpoint as ckpt

    opt.zero_grad(set_to_none=True)
    accel.backward(loss)
    gnorm = accel.clip_grad_norm_(ddp_model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    ema.update_parameters(model)
    bar.update(loss=loss.item())
    done = step + 1
    if accel.is_main_process and (done % cfg.log_every == 0 or done == cfg.unet_steps):
        ckpt.log_jsonl(Path(cfg.out) / "unet_log.jsonl", {"step": done, "loss": loss.item(), "grad_norm": float(gnorm),
                                                          "lr": sched.get_last_lr()[0], "time": time.time()})
    if accel.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.unet_steps):
        ckpt.save_checkpoint(ckdir, {"model": model, "ema": ema}, opt, {"step": done, "config_hash": chash, "lr_sched": sched.state_dict()})
