"""Decoder compression: the tiny decoder against the full VAE decoder, in quality and in PyTorch latency.

    python benchmarks/bench_decoder.py --model runs/decoder/model          # a model with a tiny decoder (decoder train)
    python benchmarks/bench_decoder.py --model M --eval-prompts 192        # + the held-out evaluator on 4-step videos
    python benchmarks/bench_decoder.py --shape tiny --model M              # the latency rows at a reduced width (the test)

Quality (``--model``: a model directory whose card names a ``tiny`` decoder):

- PSNR / SSIM of the tiny decoder's frames against the full decoder's on held-out latents: the world's val split
  (never trained on: decoder train reads the train split) prepared for the model, and the final latents of the
  4-step student on val prompts (what the decoder sees at inference);
- with ``--eval-prompts N``: the held-out evaluator's content / motion accuracy (``turbo-edge eval --decoder``)
  of the same 4-step videos decoded by the full and by the tiny decoder.

Latency (PyTorch eager, fp32, ``--threads``): one decoder call, full ``AutoencoderKL`` decode against the tiny
decoder, interleaved (``_timing.time_interleaved``), at the model's own size (its trained tiny decoder) and at
ModelScope T2V's shape (Stable Diffusion's VAE 128/256/512/512, 8 frames of 16x16 latents = 128x128 frames,
random weights: latency does not depend on them) with the tiny decoder ``decoder train`` builds by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import summary, time_interleaved  # noqa: E402

SCHEMA = 1
SD_VAE: dict[str, Any] = {  # Stable Diffusion 1.x's VAE, ModelScope T2V's
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "scaling_factor": 0.18215,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
}
SHAPES = {  # latent geometry per shape: (frames, h, w) and the VAE config
    "modelscope": {"vae": SD_VAE, "latents": (8, 16, 16)},
    "tiny": {"vae": {**SD_VAE, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 16}, "latents": (4, 8, 8)},
}
GOAL_RATIO = 5.0  # the decoder-call goal (full / tiny), stated for OpenVINO fp32 and int8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields.get("Model name", "unknown").strip()


def latency(full_fn: Any, tiny_fn: Any, warmup: int, runs: int) -> dict[str, Any]:
    import torch

    with torch.no_grad():
        times = time_interleaved({"full": full_fn, "tiny": tiny_fn}, warmup, runs)
    rows = {k: summary([t * 1e3 for t in v]) for k, v in times.items()}
    return {**rows, "full_over_tiny": rows["full"]["median_ms"] / rows["tiny"]["median_ms"]}


def params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def latency_rows(args: argparse.Namespace, model: Any, tiny: Any) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL

    from turbo_edge.core.tiny_decoder import AutoencoderKLTarget, TinyDecoder

    rows: dict[str, Any] = {}
    if model is not None:
        frames, h, w = model.card.frames or 8, (model.card.height or 32) // tiny.spatial_factor, (model.card.width or 32) // tiny.spatial_factor
        z = torch.randn(1, tiny.config.latent_channels, frames, h, w, generator=torch.Generator().manual_seed(0))
        full = AutoencoderKLTarget(model.vae)
        log(f"latency at the model's size: 1 x {frames} frames of {h}x{w} latents")
        rows["model"] = {"latents": [1, tiny.config.latent_channels, frames, h, w], "params_full_decoder": params(model.vae.decoder),
                         "params_tiny": params(tiny), "tiny_channels": list(tiny.config.channels),
                         **latency(lambda: full.frames(z), lambda: tiny(z), args.warmup, args.runs)}
    shape = SHAPES[args.shape]
    torch.manual_seed(0)
    vae = AutoencoderKL(**shape["vae"]).eval()
    frames, h, w = shape["latents"]
    z = torch.randn(1, 4, frames, h, w, generator=torch.Generator().manual_seed(0))
    full = AutoencoderKLTarget(vae)
    for width in args.widths:
        small = TinyDecoder.for_autoencoder_kl(dict(vae.config), width=width).eval()
        log(f"latency at the {args.shape} shape: full vs tiny width {width} {list(small.config.channels)}")
        rows[f"{args.shape}_w{width}"] = {"latents": [1, 4, frames, h, w], "frames_px": [frames, h * 8, w * 8],
                                          "params_full_decoder": params(vae.decoder), "params_tiny": params(small),
                                          "tiny_channels": list(small.config.channels), "random_weights": True,
                                          **latency(lambda: full.frames(z), lambda small=small: small(z), args.warmup, args.runs_large)}
    return rows


def quality_rows(args: argparse.Namespace, model: Any, tiny: Any) -> dict[str, Any]:
    import torch

    from turbo_edge.core import world
    from turbo_edge.core.student_sampling import student_latents
    from turbo_edge.core.tiny_decoder import AutoencoderKLTarget, frame_quality
    from turbo_edge.core.train_data import DataSource, load_checked
    from turbo_edge.core.world_export import world_data

    full = AutoencoderKLTarget(model.vae)
    log(f"held-out latents: the world's val split, {args.val_clips} clips prepared for {args.model}")
    data = load_checked(world_data(args.model, args.val_clips, args.seed, Path(args.work) / "val", split="val"), args.model)
    rows = {"val_split_latents": frame_quality(tiny, full, DataSource(data, seed=args.seed).head(args.val_clips).x0)}
    if model.card.sampler is not None:
        prompts = [a.prompt for a in world.prompt_set("val", args.student_clips, seed=args.seed)]
        log(f"held-out latents: the 4-step student's on {len(prompts)} val prompts")
        latents = torch.cat(list(student_latents(model, prompts, steps=4, seed=args.seed)))
        rows["student_4_step_latents"] = frame_quality(tiny, full, latents)
    return rows


def eval_rows(args: argparse.Namespace) -> dict[str, Any]:
    from turbo_edge.evaluate import run_eval
    from turbo_edge.spec.configs import EvalConfig

    out = {}
    for decoder in ("full", "tiny"):
        cfg = EvalConfig(model=args.model, steps=4, num=args.eval_prompts, prompts="val", seed=args.seed, decoder=decoder)
        log(f"held-out evaluator: 4-step videos, {args.eval_prompts} val prompts, decoder {decoder}")
        r = run_eval(cfg)
        out[decoder] = {k: r[k] for k in ("content_acc", "motion_acc", "all_acc", "consistency", "fd", "n_videos") if k in r}
        out[decoder]["command"] = f"turbo-edge eval --model {args.model} --steps 4 --num {args.eval_prompts} --prompts val --decoder {decoder}"
    out["content_points_tiny_minus_full"] = 100 * (out["tiny"]["content_acc"] - out["full"]["content_acc"])
    out["motion_points_tiny_minus_full"] = 100 * (out["tiny"]["motion_acc"] - out["full"]["motion_acc"])
    out["within_1_point"] = abs(out["content_points_tiny_minus_full"]) <= 1 and abs(out["motion_points_tiny_minus_full"]) <= 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="a model directory with a tiny decoder (decoder train's OUT/model); empty: shape rows only")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="modelscope")
    ap.add_argument("--widths", default="64,128", help="tiny decoder widths timed at --shape (comma-separated)")
    ap.add_argument("--val-clips", type=int, default=192)
    ap.add_argument("--student-clips", type=int, default=64)
    ap.add_argument("--eval-prompts", type=int, default=0, help="held-out evaluator on this many val prompts (0 skips it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--runs-large", type=int, default=5, help="timed calls per decoder at --shape")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/bench_decoder")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decoder.json"))
    args = ap.parse_args(argv)
    args.widths = [int(w) for w in str(args.widths).split(",") if w.strip()]
    import torch

    torch.set_num_threads(args.threads)
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.tiny_decoder import load_decoder_variant

    model = tiny = None
    if args.model:
        model = load_teacher(args.model)
        tiny = load_decoder_variant(args.model, "tiny")
    record: dict[str, Any] = {
        "schema": SCHEMA, "what": "tiny decoder vs the full AutoencoderKL decoder: PSNR / SSIM on held-out latents, decoder-call "
                                  "latency in PyTorch eager fp32, and (where run) the held-out evaluator on 4-step videos",
        "command": "python benchmarks/bench_decoder.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": args.model or None, "shape": args.shape, "threads": args.threads, "cpu": cpu_model(), "cores": os.cpu_count(),
        "torch": torch.__version__, "loadavg_at_start": list(os.getloadavg()), "goal_full_over_tiny": GOAL_RATIO,
        "goal_note": "the issue states the >= 5x decoder-call goal for OpenVINO fp32 / int8 bundles; these rows are PyTorch eager",
    }
    if model is not None:
        record["card_decoder"] = model.card.decoders["tiny"].to_dict()
        record["quality"] = quality_rows(args, model, tiny)
    record["latency"] = latency_rows(args, model, tiny)
    if args.eval_prompts and model is not None:
        record["evaluator"] = eval_rows(args)
    record["loadavg_at_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {args.out}")
    for name, row in record["latency"].items():
        log(f"{name}: full {row['full']['median_ms']:.1f} ms, tiny {row['tiny']['median_ms']:.1f} ms, {row['full_over_tiny']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
