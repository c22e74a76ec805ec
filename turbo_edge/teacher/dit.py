"""Train the builtin DiT teacher (``builtin-dit``: Wan2.1's architecture at the world's size), in two resumable phases.

Phase ``vae``: the causal ``AutoencoderKLWan`` on fresh 9-frame world clips (one lead-in frame, then the world's 8;
``core.wan``), object pixels weighted up as for the UNet teacher's autoencoder. Its per-channel latent mean and
standard deviation are then measured on training clips and written into its config (``latents_mean`` /
``latents_std``, Wan's normalisation).
Phase ``unet`` (the denoiser phase; the name is shared with the UNet recipe): the training clips exported as mp4 and
prepared into a DATA for that autoencoder (``core.world_export.world_data``, the path a user's videos take), then a
``WanTransformer3DModel`` trained with flow matching: ``x_t = (1 - sigma) x0 + sigma eps``, velocity target
``eps - x0``, sigmas drawn uniformly and shifted as the sampler's grid is (``spec.param.flow_shift``), prompt dropout
for classifier-free guidance, an EMA of the weights (what ships). The UMT5 text encoder is freshly initialised,
frozen, with re-drawn token embeddings (``text_token_std``), as the UNet recipe found necessary; being frozen, it embeds
each distinct caption once.

Batches and noise are pure functions of (seed, step, rank): a resumed run repeats what an uninterrupted one does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import wan, world
from turbo_edge.core.data import to_pixels
from turbo_edge.spec import param
from turbo_edge.spec.configs import TeacherTrainConfig
from turbo_edge.teacher.common import (
    _accelerator,
    _lr_lambda,
    _object_weight,
    _Progress,
    _step_rng,
    _torch_gen,
    denoiser_update,
    train_autoencoder,
    warmup_ema,
)

log = logging.getLogger(__name__)


def _video_pixels(clips: np.ndarray) -> torch.Tensor:
    """uint8 [B, F, H, W, 3] -> float [B, 3, F, H, W] in [-1, 1] (the causal autoencoder's input)."""
    return to_pixels(clips).permute(0, 2, 1, 3, 4).contiguous()


# ---------------------------------------------------------------- phase 1: causal autoencoder


def train_vae(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec) -> Path:
    torch.manual_seed(cfg.seed)
    vae = wan.build_vae(spec)
    phase_keys = ("vae_batch", "vae_lr", "vae_kl_weight", "vae_object_weight", "seed")
    chash = ckpt.config_hash({"phase": "vae", "family": "wan", **{k: getattr(cfg, k) for k in phase_keys}, "spec": spec.to_dict()})
    geometry = spec.world_config()

    def batch(rng: np.random.Generator, rank: int, ws: int) -> tuple[torch.Tensor, torch.Tensor]:
        clips_per_rank = max(1, cfg.vae_batch // spec.frames // ws)  # vae_batch counts frames, as for the UNet recipe
        _, clips = world.batch("train", cfg.seed, rng.integers(0, 2**31, size=clips_per_rank).tolist(), geometry)
        x = _video_pixels(clips)
        return x, _object_weight(x.transpose(1, 2), cfg.vae_object_weight).transpose(1, 2)  # per frame, [B, 1, F, H, W]

    return train_autoencoder(cfg, vae, chash, "causal autoencoder", batch)


@torch.no_grad()
def measure_latent_stats(vae, spec: wan.TinyWanSpec, seed: int, clips: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the posterior means on training clips (Wan's ``latents_mean`` /
    ``latents_std``: the transformer then sees unit-variance, zero-mean latents)."""
    _, c = world.batch("train", seed + 1, range(clips), spec.world_config())
    z = torch.cat([vae.encode(_video_pixels(chunk)).latent_dist.mean for chunk in np.array_split(c, max(1, clips // 32))])
    per_channel = z.transpose(0, 1).reshape(z.shape[1], -1)
    return per_channel.mean(dim=1).tolist(), per_channel.std(dim=1).tolist()


def load_vae(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec):
    """Phase 1's latest autoencoder with its measured latent statistics (measured once, then read from the run)."""
    from safetensors.torch import load_file

    last = ckpt.latest_checkpoint(Path(cfg.out) / "vae_ckpt")
    if last is None:
        raise FileNotFoundError(f"no autoencoder checkpoint under {cfg.out}/vae_ckpt: run the vae phase first")
    vae = wan.build_vae(spec)
    vae.load_state_dict(load_file(str(last / "vae.safetensors")))
    vae.eval().requires_grad_(False)
    stats_file = Path(cfg.out) / "vae_latent_stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    if stats.get("checkpoint") != last.name:
        mean, std = measure_latent_stats(vae, spec, cfg.seed)
        stats = {"latents_mean": mean, "latents_std": std, "checkpoint": last.name}
        stats_file.write_text(json.dumps(stats, indent=1) + "\n")
    vae.register_to_config(latents_mean=stats["latents_mean"], latents_std=stats["latents_std"])
    return vae


# ---------------------------------------------------------------- phase 2: transformer


def frozen_text_encoder(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec, vocab_size: int):
    """The run's frozen UMT5 encoder: seeded, its token embeddings re-drawn at ``text_token_std`` (so every world word
    stays distinct, docs/decisions.md), written once to ``OUT/text_encoder.safetensors`` and read back after, so the
    DATA's stored embeddings, the training loop and the exported teacher use the same weights."""
    from safetensors.torch import load_model, save_model

    file = Path(cfg.out) / "text_encoder.safetensors"
    encoder = wan.build_text_encoder(spec, vocab_size)
    if file.is_file():
        load_model(encoder, str(file))  # safetensors' own helpers: the tied input embedding is stored once
    else:
        torch.manual_seed(cfg.seed)
        encoder = wan.build_text_encoder(spec, vocab_size)
        with torch.no_grad():
            emb = encoder.get_input_embeddings().weight
            emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(cfg.seed)) * max(cfg.text_token_std, 1.0))
        save_model(encoder, str(file))
    return encoder.eval().requires_grad_(False)


def caption_table(text_encoder, tokenizer, captions: list[str]) -> tuple[dict[str, int], torch.Tensor]:
    """Every distinct caption and the empty (unconditional) prompt embedded once by the frozen encoder: (row of each
    caption, embeddings [K, L, D]). The encoder is frozen, so this is what encoding each batch would give."""
    from turbo_edge.core.text_encoders import UMT5Text

    distinct = ["", *sorted(set(captions))]
    return {c: i for i, c in enumerate(distinct)}, UMT5Text().encode(text_encoder, tokenizer, distinct)


def train_transformer(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec, vae, tokenizer) -> Path:
    from torch.optim.swa_utils import AveragedModel

    out = Path(cfg.out)
    ckdir = out / "unet_ckpt"
    accel = _accelerator()
    text_encoder = frozen_text_encoder(cfg, spec, len(tokenizer))
    with accel.main_process_first():
        latents, captions = world_latents(cfg, spec, vae, tokenizer, text_encoder, make=accel.is_main_process)
    rows, table = caption_table(text_encoder, tokenizer, captions)
    caption_rows = np.array([rows[c] for c in captions])
    torch.manual_seed(cfg.seed)
    model = wan.build_transformer(spec)
    ema = AveragedModel(model, multi_avg_fn=warmup_ema(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup_steps))
    phase_keys = ("dataset_clips", "batch", "lr", "warmup_steps", "cond_dropout", "ema_decay", "seed", "text_token_std")
    chash = ckpt.config_hash({"phase": "transformer", "family": "wan", **{k: getattr(cfg, k) for k in phase_keys}, "spec": spec.to_dict()})
    start = 0
    last = ckpt.latest_checkpoint(ckdir)
    if last is not None:
        meta = ckpt.load_checkpoint(last, {"model": model, "ema": ema}, opt, expected_config_hash=chash)
        sched.load_state_dict(meta["lr_sched"])
        start = int(meta["step"])
        log.info("resumed transformer training from %s (step %d)", last, start)
    ddp_model, opt = accel.prepare(model, opt)
    rank, ws = accel.process_index, accel.num_processes
    per_rank = cfg.batch // ws
    bar = _Progress(cfg.unet_steps, start, "teacher transformer", accel.is_main_process)
    ddp_model.train()
    for step in range(start, cfg.unet_steps):
        rng = _step_rng(cfg.seed, step, rank, 3)
        idx = rng.integers(0, len(latents), size=per_rank)
        x0 = torch.from_numpy(latents[idx].astype(np.float32)).permute(0, 2, 1, 3, 4)  # [B, C, f, h, w]
        drop = rng.random(per_rank) < cfg.cond_dropout
        text = table[np.where(drop, 0, caption_rows[idx])]  # row 0: the empty prompt (classifier-free guidance)
        sigma = torch.from_numpy(param.flow_shift(rng.random(per_rank), spec.flow_shift)).float()
        eps = torch.randn(x0.shape, generator=_torch_gen(cfg.seed, step, rank, 4))
        x_t = param.flow_add_noise(x0, eps, sigma)
        pred = ddp_model(x_t, sigma * 1000.0, encoder_hidden_states=text, return_dict=False)[0]
        loss = (pred - param.flow_velocity(x0, eps)).square().mean()
        denoiser_update(cfg, accel, step, loss, ddp_model, model, ema, opt, sched, bar, ckdir, chash)
    bar.close()
    accel.wait_for_everyone()
    return ckdir


def _assemble(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec, vae, tokenizer, text_encoder, transformer=None):
    """A ``T2VModel`` of the Wan family from the run's parts (an untrained transformer where none is given)."""
    from turbo_edge.core.families import family_components
    from turbo_edge.core.pipeline_io import T2VModel

    torch.manual_seed(cfg.seed)
    transformer = transformer if transformer is not None else wan.build_transformer(spec)
    return T2VModel(transformer, vae, text_encoder, tokenizer, wan.build_scheduler(spec), components=family_components("wan"))


def _card(spec: wan.TinyWanSpec, **kw: Any):
    from turbo_edge.core.autoencoders import CausalWan
    from turbo_edge.spec.card import ModelCard

    geometry = CausalWan().config_geometry(spec.vae_config()).to_dict()
    return ModelCard(kind="teacher", frames=spec.frames, height=spec.size, width=spec.size, closed_vocabulary=spec.words,
                     lead_in_frames=spec.lead_in, latent_geometry=geometry, **kw)


def world_latents(cfg: TeacherTrainConfig, spec: wan.TinyWanSpec, vae, tokenizer, text_encoder,
                  make: bool = True) -> tuple[np.ndarray, list[str]]:
    """The first ``dataset_clips`` 9-frame training clips through world export -> data prepare for this autoencoder, as
    normalised latents float16 [N, f, C, h, w] and captions in the world's clip order."""
    from turbo_edge.core.pipeline_io import save_model
    from turbo_edge.core.prepared import PreparedData
    from turbo_edge.core.world_export import world_data
    from turbo_edge.spec.card import Lineage

    work = Path(cfg.out) / "dataset"
    if make:
        lineage = Lineage(stage="teacher_train", parent=None, config=cfg.to_dict(), step=0,
                          details={"purpose": "the world DATA's autoencoder: transformer and text encoder untrained"})
        model_dir = save_model(_assemble(cfg, spec, vae, tokenizer, text_encoder), work / "vae_model", card=_card(spec, lineage=lineage),
                               overwrite=True, in_run_dir=True)  # inside its own run directory
        data = PreparedData(world_data(str(model_dir), cfg.dataset_clips, cfg.seed, work, lead_in=spec.lead_in))
    else:
        data = PreparedData(work / "data")
    rows: dict[str, tuple[np.ndarray, str]] = {}
    for k in range(len(data.shards)):
        shard = data.load_shard(k)
        rows.update((src, (lat.half().numpy(), cap)) for lat, cap, src in zip(shard.latents, shard.captions, shard.sources))
    if len(rows) != cfg.dataset_clips:
        raise ValueError(f"{data.path} holds {len(rows)} usable clips of the {cfg.dataset_clips} exported; "
                         f"delete {work} and run again")
    order = sorted(rows)
    return np.stack([rows[s][0] for s in order]), [rows[s][1] for s in order]


def run(cfg: TeacherTrainConfig) -> None:
    spec = wan.TinyWanSpec()
    tokenizer = wan.build_tokenizer(spec)
    if "vae" in cfg.phases:
        train_vae(cfg, spec)
    if "unet" in cfg.phases:
        train_transformer(cfg, spec, load_vae(cfg, spec), tokenizer)


def export_teacher(run_dir: str | Path, out: str | Path, use_ema: bool = True, half: bool = True, overwrite: bool = False) -> Path:
    """The run's latest checkpoints as a diffusers ``WanPipeline`` directory (EMA weights by default)."""
    from safetensors.torch import load_file

    from turbo_edge.core.pipeline_io import save_model
    from turbo_edge.spec.card import Lineage

    cfg = TeacherTrainConfig.load(Path(run_dir) / "teacher_train_config.json")
    spec = wan.TinyWanSpec()
    tokenizer = wan.build_tokenizer(spec)
    vae = load_vae(cfg, spec)
    last = ckpt.latest_checkpoint(Path(run_dir) / "unet_ckpt")
    if last is None:
        raise FileNotFoundError(f"no transformer checkpoint under {run_dir}/unet_ckpt: run the unet phase first")
    transformer = wan.build_transformer(spec)
    if use_ema:
        sd = load_file(str(last / "ema.safetensors"))
        transformer.load_state_dict({k.removeprefix("module."): v for k, v in sd.items() if k.startswith("module.")})
    else:
        transformer.load_state_dict(load_file(str(last / "model.safetensors")))
    text_encoder = frozen_text_encoder(cfg, spec, len(tokenizer))
    step = json.loads((last / "state.json").read_text())["step"]
    reproduce = (f"turbo-edge teacher train --family wan --out {run_dir} && "
                 f"turbo-edge teacher export --run {run_dir} --out turbo_edge/assets/dit")
    lineage = Lineage(stage="teacher_train", parent=None, config=cfg.to_dict(), step=step,
                      details={"weights": "ema" if use_ema else "online", "family": "wan"})
    if half:
        transformer, vae, text_encoder = transformer.half(), vae.half(), text_encoder.half()
    t2v = _assemble(cfg, spec, vae, tokenizer, text_encoder, transformer)
    card = _card(spec, lineage=lineage, reproduce=reproduce, weights_dtype="float16" if half else "float32")
    return save_model(t2v, out, card=card, overwrite=overwrite)

