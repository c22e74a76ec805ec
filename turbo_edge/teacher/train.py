"""Train the builtin tiny teacher on the synthetic world, on HF Accelerate, in two resumable phases.

Phase ``vae``: a per-frame AutoencoderKL (32x32x3 <-> 8x8x4), object pixels weighted up so small shapes are
not traded for background. Its latent scaling factor is then measured on training clips.
Phase ``unet``: the training clips are exported as mp4 and prepared into a DATA for that autoencoder (the path
a user's videos take: ``core.world_export.world_data``), read once into memory; a UNet3DConditionModel and a
CLIPTextModel are trained jointly with v-prediction and min-SNR weighting, with prompt dropout for
classifier-free guidance and an EMA of the weights, which is what ships. The autoencoder phase, in pixel space,
renders fresh world clips for every batch.

Every batch and every noise draw is a pure function of (seed, step, rank), so a resumed run repeats exactly
what an uninterrupted one would have done.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import world
from turbo_edge.core.autoencoders import PerFrameKL
from turbo_edge.core.data import to_pixels
from turbo_edge.core.denoiser import call_denoiser
from turbo_edge.core.models import (
    TEMPORAL_POSITION_KEY,
    TinyTeacherSpec,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
)
from turbo_edge.core.pipeline_io import T2VModel, load_teacher, save_model
from turbo_edge.spec import param
from turbo_edge.spec.card import Lineage, ModelCard, read_card
from turbo_edge.spec.configs import TeacherTrainConfig
from turbo_edge.spec.outputs import claim_run_dir
from turbo_edge.spec.sampler import DEFAULT_GUIDANCE
from turbo_edge.spec.tokenizer_files import write_tokenizer
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


# ---------------------------------------------------------------- phase 1: autoencoder


def train_vae(cfg: TeacherTrainConfig, spec: TinyTeacherSpec) -> Path:
    torch.manual_seed(cfg.seed)
    vae = build_vae(spec)
    # The step count is left out of the hash: extending a finished run is a legitimate resume.
    phase_keys = ("vae_batch", "vae_lr", "vae_kl_weight", "vae_object_weight", "seed")
    chash = ckpt.config_hash({"phase": "vae", **{k: getattr(cfg, k) for k in phase_keys}, "spec": spec.to_dict()})

    def batch(rng: np.random.Generator, rank: int, ws: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_rank = cfg.vae_batch // ws
        # Four random frames from each of ``per_rank // 4`` fresh clips: many clips per batch, cheap to render.
        idx = rng.integers(0, 2**31, size=max(1, per_rank // 4))
        _, clips = world.batch("train", cfg.seed, idx.tolist())
        picks = np.stack([rng.choice(spec.frames, size=4, replace=False) for _ in idx])
        frames = to_pixels(clips[np.arange(len(idx))[:, None], picks].reshape(-1, *clips.shape[2:]))
        return frames, _object_weight(frames, cfg.vae_object_weight)

    return train_autoencoder(cfg, vae, chash, "autoencoder", batch)


@torch.no_grad()
def measure_scaling_factor(vae, seed: int, clips: int = 256) -> float:
    """1 / std of latents on training clips, so the UNet sees unit-variance inputs (as SD's 0.18215)."""
    _, c = world.batch("train", seed + 1, range(clips))
    frames = to_pixels(c.reshape(-1, *c.shape[2:]))
    z = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in frames.split(512)])
    return float(1.0 / z.std())


# ---------------------------------------------------------------- phase 2: UNet + text encoder


class TeacherModel(torch.nn.Module):
    """The two trained parts, held together so one optimizer, one EMA and one DDP wrapper cover both."""

    def __init__(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder

    def forward(self, latents_bcfhw: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        cond = self.text_encoder(input_ids).last_hidden_state
        return call_denoiser(self.unet, latents_bcfhw, timesteps, cond)


def prompt_ids(tokenizer, captions: list[str], drop: np.ndarray, max_length: int) -> torch.Tensor:
    """Token ids of ``captions``, the rows with ``drop`` set replaced by the empty (unconditional) prompt."""
    prompts = ["" if d else c for c, d in zip(captions, drop)]
    return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids


def _data_model(cfg: TeacherTrainConfig, spec: TinyTeacherSpec, vae, tokenizer) -> Path:
    """A model directory whose autoencoder is the one the UNet phase trains on, for ``data prepare``: the warm-start
    model, or, from scratch, phase 1's autoencoder beside an untrained UNet and text encoder (DATA's fingerprint is
    its VAE, text encoder and tokenizer; the UNet phase tokenizes the captions itself, so the stored text embeddings go
    unused). Rewritten on every run: the same autoencoder gives the same files, so its DATA is reused."""
    if cfg.init_from:
        return _init_dir(cfg)
    path = Path(cfg.out) / "dataset" / "vae_model"
    torch.manual_seed(cfg.seed)
    t2v = T2VModel(build_unet(spec), vae, build_text_encoder(spec, len(tokenizer)), tokenizer, build_scheduler(spec))
    lineage = Lineage(stage="teacher_train", parent=None, config=cfg.to_dict(), step=0,
                      details={"purpose": "the world DATA's autoencoder: UNet and text encoder untrained"})
    card = ModelCard(kind="teacher", frames=spec.frames, height=spec.size, width=spec.size, closed_vocabulary=spec.words, lineage=lineage)
    return save_model(t2v, path, card=card, overwrite=True, in_run_dir=True)


def world_latents(cfg: TeacherTrainConfig, spec: TinyTeacherSpec, vae, tokenizer, make: bool = True) -> tuple[np.ndarray, list[str]]:
    """The first ``dataset_clips`` training clips through world export -> data prepare, as latents float16
    [N, F, C, h, w] (scaled) and captions, in the world's clip order (row i is clip i). ``make=False`` (the other
    processes of a multi-process run, after the main one made it) only reads the DATA."""
    from turbo_edge.core.prepared import PreparedData
    from turbo_edge.core.world_export import world_data

    work = Path(cfg.out) / "dataset"
    data = PreparedData(world_data(str(_data_model(cfg, spec, vae, tokenizer)), cfg.dataset_clips, cfg.seed, work) if make else work / "data")
    rows: dict[str, tuple[np.ndarray, str]] = {}
    for k in range(len(data.shards)):
        shard = data.load_shard(k)
        rows.update((src, (lat.half().numpy(), cap)) for lat, cap, src in zip(shard.latents, shard.captions, shard.sources))
    if len(rows) != cfg.dataset_clips:
        raise ValueError(f"{data.path} holds {len(rows)} usable clips of the {cfg.dataset_clips} exported "
                         f"({data.index['bad']}); delete {Path(cfg.out) / 'dataset'} and run again")
    order = sorted(rows)  # NNNNNN.mp4
    return np.stack([rows[s][0] for s in order]), [rows[s][1] for s in order]


def sample_timesteps(rng: np.random.Generator, n: int, num_train: int, high_fraction: float, high_min_t: int) -> np.ndarray:
    """Uniform training timesteps, with ``high_fraction`` of them redrawn from [high_min_t, num_train).

    With ``high_fraction == 0`` the generator is advanced exactly as plain uniform sampling does, so runs
    recorded before this option existed replay the same batches.
    """
    t = rng.integers(0, num_train, size=n)
    if high_fraction > 0:
        high = rng.random(n) < high_fraction
        t[high] = rng.integers(min(high_min_t, num_train - 1), num_train, size=int(high.sum()))
    return t


def train_unet(cfg: TeacherTrainConfig, spec: TinyTeacherSpec, vae, tokenizer, scheduler_config: dict[str, Any]) -> Path:
    from torch.optim.swa_utils import AveragedModel

    out = Path(cfg.out)
    ckdir = out / "unet_ckpt"
    accel = _accelerator()
    with accel.main_process_first():  # the main process exports and prepares the world, the others read it
        latents, captions = world_latents(cfg, spec, vae, tokenizer, make=accel.is_main_process)
    torch.manual_seed(cfg.seed)
    model = TeacherModel(build_unet(spec), build_text_encoder(spec, len(tokenizer)))
    if cfg.text_token_std > 0:
        with torch.no_grad():
            emb = model.text_encoder.get_input_embeddings().weight
            emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(cfg.seed)) * cfg.text_token_std)
    last = ckpt.latest_checkpoint(ckdir)
    if cfg.init_from and last is None:
        _warm_start(model, cfg)
    if not cfg.train_text_encoder:
        model.text_encoder.requires_grad_(False).eval()
    ema = AveragedModel(model, multi_avg_fn=warmup_ema(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup_steps))
    phase_keys = ("dataset_clips", "batch", "lr", "warmup_steps", "min_snr_gamma", "cond_dropout", "ema_decay", "seed", "init_from", "min_snr_plus_one", "train_text_encoder", "text_token_std", "high_noise_fraction", "high_noise_min_t")
    hashed = {k: getattr(cfg, k) for k in phase_keys}
    if cfg.high_noise_fraction == 0:  # off: the hash of a run recorded before the option existed, so it still resumes
        del hashed["high_noise_fraction"], hashed["high_noise_min_t"]
    # The world DATA's latents and captions are bit-equal to the in-memory encode they replaced (16,384 clips,
    # benchmarks/check_teacher_world_data.py), so a run begun by that code resumes exactly: same hash.
    chash = ckpt.config_hash({"phase": "unet", **hashed, "spec": spec.to_dict()})
    start = 0
    if last is not None:
        meta = ckpt.load_checkpoint(last, {"model": model, "ema": ema}, opt, expected_config_hash=chash)
        sched.load_state_dict(meta["lr_sched"])
        start = int(meta["step"])
        log.info("resumed UNet training from %s (step %d)", last, start)
    ddp_model, opt = accel.prepare(model, opt)
    abar = param.alphas_cumprod(scheduler_config)
    prediction_type = scheduler_config["prediction_type"]
    rank, ws = accel.process_index, accel.num_processes
    per_rank = cfg.batch // ws
    bar = _Progress(cfg.unet_steps, start, "teacher unet", accel.is_main_process)
    ddp_model.train()
    for step in range(start, cfg.unet_steps):
        rng = _step_rng(cfg.seed, step, rank, 3)
        idx = rng.integers(0, len(latents), size=per_rank)
        x0 = torch.from_numpy(latents[idx].astype(np.float32)).permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
        drop = rng.random(per_rank) < cfg.cond_dropout
        ids = prompt_ids(tokenizer, [captions[i] for i in idx], drop, spec.max_length)
        t = sample_timesteps(rng, per_rank, len(abar), cfg.high_noise_fraction, cfg.high_noise_min_t)
        alpha, sigma = (torch.from_numpy(a).float() for a in param.alpha_sigma(abar[t]))
        eps = torch.randn(x0.shape, generator=_torch_gen(cfg.seed, step, rank, 4))
        x_t = param.add_noise(x0, eps, alpha, sigma)
        target = param.target_for(prediction_type, x0, eps, alpha, sigma)
        pred = ddp_model(x_t, torch.from_numpy(t), ids)
        w = torch.from_numpy(param.min_snr_weight(abar[t], cfg.min_snr_gamma, prediction_type, cfg.min_snr_plus_one)).float()
        loss = (w * (pred - target).square().mean(dim=(1, 2, 3, 4))).mean()
        denoiser_update(cfg, accel, step, loss, ddp_model, model, ema, opt, sched, bar, ckdir, chash)
    bar.close()
    accel.wait_for_everyone()
    return ckdir


# ---------------------------------------------------------------- orchestration and export


def _init_model(init_from: str, spec: TinyTeacherSpec):
    """The warm-start teacher, checked to have the builtin architecture before any weight is copied."""

    init = load_teacher(init_from)
    want = {"unet": build_unet(spec).config, "vae": build_vae(spec).config}
    for name, config in want.items():
        got = getattr(init, name).config
        # Keys that shape no weight: a snapshot without the frame-position embedding warm-starts a recipe with it.
        free = ("scaling_factor", TEMPORAL_POSITION_KEY)
        diff = sorted(k for k in config if not k.startswith("_") and k not in free and config[k] != got.get(k))
        if diff:
            raise ValueError(f"init_from {init_from}: its {name} differs from the builtin architecture in {diff}; warm start needs the same spec")
    return init


def _init_dir(cfg: TeacherTrainConfig) -> Path:
    """The warm-start model, copied into the run once, so later exports do not depend on what the alias holds then."""

    path = Path(cfg.out) / "init"
    if not path.is_dir():
        init = _init_model(cfg.init_from, TinyTeacherSpec())
        save_model(init, path, overwrite=True, in_run_dir=True)  # inside its own run directory
    return path


def _warm_start(model: TeacherModel, cfg: TeacherTrainConfig) -> None:

    init = load_teacher(_init_dir(cfg))
    model.unet.load_state_dict(init.denoiser.state_dict())
    if cfg.train_text_encoder:  # a frozen encoder is the recipe's own seeded one, not the init model's
        model.text_encoder.load_state_dict(init.text_encoder.state_dict())
    log.info("warm start: UNet%s from %s (%s)", " and text encoder" if cfg.train_text_encoder else "", cfg.init_from, init.path)


def _load_vae(cfg: TeacherTrainConfig, spec: TinyTeacherSpec):

    if cfg.init_from:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(_init_dir(cfg) / "vae", use_safetensors=True, torch_dtype=torch.float32)
        return vae.eval().requires_grad_(False)
    last = ckpt.latest_checkpoint(Path(cfg.out) / "vae_ckpt")
    if last is None:
        raise FileNotFoundError(f"no autoencoder checkpoint under {cfg.out}/vae_ckpt: run the vae phase first")
    vae = build_vae(spec)
    vae.load_state_dict(ckpt.load_tensors(last, "vae"))
    sf_file = Path(cfg.out) / "vae_scaling.json"
    if sf_file.is_file():
        sf = json.loads(sf_file.read_text())["scaling_factor"]
    else:
        sf = measure_scaling_factor(vae.eval(), cfg.seed)
        sf_file.write_text(json.dumps({"scaling_factor": sf, "checkpoint": last.name}) + "\n")
    vae.register_to_config(scaling_factor=sf)
    return vae.eval().requires_grad_(False)


def _tokenizer(cfg: TeacherTrainConfig, spec: TinyTeacherSpec):
    from transformers import CLIPTokenizer


    path = write_tokenizer(Path(cfg.out) / "tokenizer", spec.words, spec.max_length)
    return CLIPTokenizer.from_pretrained(path)


def run(cfg: TeacherTrainConfig) -> None:
    """Train the requested phases, resuming each from its latest checkpoint."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    spec = TinyTeacherSpec()
    claim_run_dir(cfg.out, "teacher_train_config.json")
    cfg.save(Path(cfg.out) / "teacher_train_config.json")
    if cfg.family == "wan":
        from turbo_edge.teacher import dit

        dit.run(cfg)
        return
    tokenizer = _tokenizer(cfg, spec)
    if "vae" in cfg.phases:
        train_vae(cfg, spec)
    if "unet" in cfg.phases:

        train_unet(cfg, spec, _load_vae(cfg, spec), tokenizer, dict(build_scheduler(spec).config))


def export_teacher(run_dir: str | Path, out: str | Path, use_ema: bool = True, half: bool = True, overwrite: bool = False) -> Path:
    """Assemble the diffusers text-to-video directory from a run's latest checkpoints (EMA weights by default).

    ``half`` stores the weights as float16 (half the bytes in git); ``from_pretrained`` loads them back as float32,
    and everything downstream runs on those rounded weights.
    """


    cfg = TeacherTrainConfig.load(Path(run_dir) / "teacher_train_config.json")
    if cfg.family == "wan":
        from turbo_edge.teacher import dit

        return dit.export_teacher(run_dir, out, use_ema=use_ema, half=half, overwrite=overwrite)
    spec = TinyTeacherSpec()
    tokenizer = _tokenizer(cfg, spec)
    vae = _load_vae(cfg, spec)
    last = ckpt.latest_checkpoint(Path(run_dir) / "unet_ckpt")
    if last is None:
        raise FileNotFoundError(f"no UNet checkpoint under {run_dir}/unet_ckpt: run the unet phase first")
    model = TeacherModel(build_unet(spec), build_text_encoder(spec, len(tokenizer)))
    if use_ema:
        sd = ckpt.load_tensors(last, "ema")
        model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items() if k.startswith("module.")})
    else:
        model.load_state_dict(ckpt.load_tensors(last, "model"))
    step = ckpt.read_state(last)["step"]
    training: dict[str, Any] = {"config": cfg.to_dict(), "unet_step": step, "weights": "ema" if use_ema else "online"}
    reproduce = f"turbo-edge teacher train --out {run_dir} && turbo-edge teacher export --run {run_dir} --out turbo_edge/assets/teacher"
    if cfg.init_from:  # the chain of runs: what this one started from, and how that was made
        init = read_card(_init_dir(cfg))
        training["init"] = _training_record(init)
        training["unet_step_total"] = step + int(training["init"].get("unet_step_total", training["init"].get("unet_step", 0)))
        reproduce = f"({init.reproduce or '?'}) then: turbo-edge teacher train --phases unet --init-from <that model> --out {run_dir} && turbo-edge teacher export --run {run_dir}"
    lineage = Lineage(stage="teacher_train", parent=cfg.init_from or None, config=training.pop("config"), step=step, details=training)
    if half:
        model, vae = model.half(), vae.half()
    t2v = T2VModel(model.unet, vae, model.text_encoder, tokenizer, build_scheduler(spec))
    card = ModelCard(kind="teacher", frames=spec.frames, height=spec.size, width=spec.size, closed_vocabulary=spec.words,
                     default_guidance=DEFAULT_GUIDANCE, lineage=lineage, reproduce=reproduce, weights_dtype="float16" if half else "float32",
                     latent_geometry=PerFrameKL().geometry(vae).to_dict())
    return save_model(t2v, out, card=card, overwrite=overwrite)


def _training_record(card: ModelCard) -> dict[str, Any]:
    """A teacher card's run record as the chain nests it: {config, unet_step, weights, init, unet_step_total}."""
    if card.lineage is None:
        return {}
    return {"config": card.lineage.config, "unet_step": card.lineage.step, **card.lineage.details}
