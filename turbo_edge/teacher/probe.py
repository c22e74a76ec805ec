"""How much a text-to-video UNet listens to each attribute of its prompt, read off its denoising loss.

The evaluator says whether sampled clips move the right way; this probe says why not, in seconds and without
sampling. For moving world clips it noises each clip once per timestep, then asks the model for x0 under the
true prompt and under prompts that change one attribute (the direction of travel, the colour) or drop the
text. If the model uses an attribute, the wrong word must cost loss:

    gap = (mse(wrong prompt) - mse(true prompt)) / mse(true prompt)

and the prompt with the lowest loss names the attribute (a diffusion classifier, as in Li et al. 2023,
"Your Diffusion Model is Secretly a Zero-Shot Classifier"): ``direction_acc`` is that read-out over the four
directions (chance 0.25). A teacher whose sampled clips move in a random direction shows direction gaps
near zero at the high-noise timesteps, where the direction of a sample is decided.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core import world
from turbo_edge.core.data import to_pixels
from turbo_edge.core.pipeline_io import T2VModel
from turbo_edge.core.sampling import encode_text, latent_shape
from turbo_edge.spec import param
from turbo_edge.spec.configs import ProbeConfig

DIRECTIONS = ("left", "right", "up", "down")


def _world_config(model: T2VModel) -> world.WorldConfig:
    _, frames, _, _ = latent_shape(model, None, None, None)  # the model's own default clip geometry
    size = int(model.vae.config.sample_size)
    try:
        return world.WorldConfig(frames=frames, size=size)
    except ValueError as e:
        raise ValueError(
            f"the synthetic world cannot draw {frames}-frame {size}x{size} clips for this model ({e}); probe a model of the world's geometry"
        ) from e


def _moving_clips(num: int, seed: int, cfg: world.WorldConfig) -> tuple[list[world.Attributes], np.ndarray]:
    attrs, clips, i = [], [], 0
    while len(attrs) < num:
        a, c = world.sample("val", seed, i, cfg)
        i += 1
        if a.motion in DIRECTIONS:
            attrs.append(a)
            clips.append(c)
    return attrs, np.stack(clips)


def _variants(a: world.Attributes) -> dict[str, list[str]]:
    colours = list(world.COLOURS)
    other_colour = colours[(colours.index(a.colour) + 1) % len(colours)]
    return {
        "direction": [world.Attributes(a.colour, a.shape, d).prompt for d in DIRECTIONS],  # true one included
        "colour": [world.Attributes(other_colour, a.shape, a.motion).prompt],
        "uncond": [""],
    }


@dataclass(frozen=True)
class _Noised:
    x_t: torch.Tensor
    timesteps: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    x0: torch.Tensor


def _x0_mse(model: T2VModel, n: _Noised, prediction_type: str, cond: torch.Tensor) -> torch.Tensor:
    """Per-clip x0-space MSE of the model's prediction from ``n.x_t`` under text states ``cond``."""
    dtype = next(model.denoiser.parameters()).dtype
    out = model.denoise(n.x_t.to(dtype), n.timesteps, cond.to(dtype)).float()
    x0_hat = param.to_x0_eps(prediction_type, out, n.x_t, n.alpha, n.sigma)[0]
    return (x0_hat - n.x0).square().mean(dim=(1, 2, 3, 4))


@torch.no_grad()
def probe(model: T2VModel, cfg: ProbeConfig | None = None) -> dict[str, Any]:
    """Per timestep: x0 MSE under the true prompt, relative gaps for a wrong direction / colour / no text, and
    the diffusion-classifier direction accuracy."""
    cfg = cfg or ProbeConfig()
    sc = model.scheduler_config
    abar = param.alphas_cumprod(sc)
    bad = [t for t in cfg.timesteps if not 0 <= t < len(abar)]
    if bad:
        raise ValueError(f"timesteps {bad} outside the model's training range [0, {len(abar)})")
    wcfg = _world_config(model)
    attrs, clips = _moving_clips(cfg.num, cfg.seed, wcfg)
    model.eval()
    dtype = next(model.denoiser.parameters()).dtype
    sf = model.vae.config.scaling_factor
    frames = clips.shape[1]
    gen = torch.Generator().manual_seed(cfg.seed)
    sums = {t: {"right": 0.0, "direction": 0.0, "colour": 0.0, "uncond": 0.0, "hits": 0} for t in cfg.timesteps}
    for start in range(0, cfg.num, cfg.batch):
        a_b, c_b = attrs[start : start + cfg.batch], clips[start : start + cfg.batch]
        b = len(a_b)
        px = to_pixels(c_b.reshape(-1, *c_b.shape[2:])).to(dtype)
        z = model.vae.encode(px).latent_dist.mean * sf
        x0 = z.reshape(b, frames, *z.shape[1:]).permute(0, 2, 1, 3, 4).float()  # [B, C, F, h, w]
        variants = [_variants(a) for a in a_b]
        truth = np.array([DIRECTIONS.index(a.motion) for a in a_b])
        cond = {
            "direction": [encode_text(model, [v["direction"][k] for v in variants]) for k in range(len(DIRECTIONS))],
            "colour": encode_text(model, [v["colour"][0] for v in variants]),
            "uncond": encode_text(model, [""] * b),
        }
        for t in cfg.timesteps:
            alpha, sigma = (torch.from_numpy(v).float() for v in param.alpha_sigma(abar[np.full(b, t)]))
            eps = torch.randn(x0.shape, generator=gen)
            x_t = param.add_noise(x0, eps, alpha, sigma)
            noised = _Noised(x_t, torch.full((b,), t, dtype=torch.long), alpha, sigma, x0)
            mse = functools.partial(_x0_mse, model, noised, sc["prediction_type"])

            per_dir = torch.stack([mse(c) for c in cond["direction"]], dim=1)  # [B, 4]
            right = per_dir[torch.arange(b), torch.from_numpy(truth)]
            wrong = (per_dir.sum(dim=1) - right) / (len(DIRECTIONS) - 1)
            s = sums[t]
            s["right"] += right.sum().item()
            s["direction"] += wrong.sum().item()
            s["colour"] += mse(cond["colour"]).sum().item()
            s["uncond"] += mse(cond["uncond"]).sum().item()
            s["hits"] += int((per_dir.argmin(dim=1).numpy() == truth).sum())
    rows = []
    for t in cfg.timesteps:
        s = sums[t]
        right = s["right"] / cfg.num
        rows.append(
            {
                "t": int(t),
                "snr": float(param.snr(abar[[t]])[0]),
                "mse_true_prompt": right,
                "gap_direction": (s["direction"] / cfg.num - right) / right,
                "gap_colour": (s["colour"] / cfg.num - right) / right,
                "gap_uncond": (s["uncond"] / cfg.num - right) / right,
                "direction_acc": s["hits"] / cfg.num,
            }
        )
    return {"model": str(model.path), "num": cfg.num, "seed": cfg.seed, "rows": rows}


def run(cfg: ProbeConfig) -> dict[str, Any]:
    from turbo_edge.core.pipeline_io import load_teacher

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    result = probe(load_teacher(cfg.model, torch_dtype=torch.float32), cfg)
    result["command"] = (
        f"turbo-edge teacher probe --model {cfg.model} --timesteps {','.join(map(str, cfg.timesteps))} "
        f"--num {cfg.num} --seed {cfg.seed}" + (f" --json {cfg.json}" if cfg.json else "")
    )
    result["config"] = cfg.to_dict()
    if cfg.json:
        out = Path(cfg.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'t':>5} {'snr':>8} {'mse':>8} {'dir gap':>8} {'col gap':>8} {'no-text':>8} {'dir acc':>7}"]
    for r in result["rows"]:
        lines.append(
            f"{r['t']:>5} {r['snr']:>8.4f} {r['mse_true_prompt']:>8.4f} {r['gap_direction']:>+8.1%} "
            f"{r['gap_colour']:>+8.1%} {r['gap_uncond']:>+8.1%} {r['direction_acc']:>7.2f}"
        )
    return "\n".join(lines)
