"""``turbo-edge decoder train``: distil a tiny decoder against a model's own full decoder, resumable, logged as JSON lines.

Decoder-only distillation: the latents are the model's own (a prepared DATA's, or the world's clips prepared for
it), the encoder and the latent space are untouched, and the frozen full decoder's frames are the target. Per step:

1. a batch of scaled latents x0 [B, C, F, h, w] (what the denoiser produces, what ``sampling.decode`` divides by
   the scaling factor);
2. target = the full decoder's frames, clamped to [-1, 1] (as users see them), under no_grad;
3. pred = the tiny decoder's frames before its clamp (a clamp has no gradient outside [-1, 1]);
4. loss = l1_weight * L1 + mse_weight * MSE + perceptual_weight * LPIPS-style distance of the model's own frozen
   VAE encoder features (never the held-out evaluator) + adv_weight * hinge generator loss (from ``adv_start``);
5. with ``adv_weight > 0``: a discriminator step, hinge loss, the full decoder's frames real, the tiny one's fake.

``--variant pruned`` (VDMini for the decoder) starts from the full decoder's own weights instead: the units whose
removal alone changes its frames least (measured on the first ``importance_clips`` clips; or ``--remove``, or a
``--plan`` replayed) are removed, ``channel_ratio`` of every remaining resnet's internal norm groups go through
torch-pruning, and the same losses fine-tune it (``core.pruned_decoder``; the plan is ``decoder_plan.json``).

Batches are the DATA's rank share in order (checkpoints record every rank's position), and nothing else is drawn at
random, so a resumed run is the uninterrupted one. At the end the tiny decoder is scored on held-out latents (PSNR /
SSIM against the full decoder) and the model is written to ``OUT/model``: a copy of the input model with the new
decoder in ``tiny_vae/`` or ``pruned_vae/`` (diffusers form) and named in the card's ``decoders`` with its lineage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import train_data
from turbo_edge.core.pipeline_io import (
    ALIASES,
    MODEL_INDEX,
    check_layout,
    check_same_autoencoder,
    load_teacher,
    resolve_model_path,
)
from turbo_edge.core.pruned_decoder import PRUNED_FOLDER, measure_importance, pruned_class
from turbo_edge.core.tiny_decoder import (
    TINY_FOLDER,
    PatchDiscriminator,
    TinyDecoder,
    frame_quality,
    full_decoder_target,
    perceptual_distance,
)
from turbo_edge.core.training import adamw, autocast, mean_over_ranks
from turbo_edge.spec.card import DecoderVariant, Lineage, ModelCard, read_card, write_card
from turbo_edge.spec.configs import DecoderTrainConfig
from turbo_edge.spec.host import process_memory
from turbo_edge.spec.outputs import claim_run_dir, staged_dir

log = logging.getLogger(__name__)
CONFIG_FILE = "decoder_config.json"
PLAN_FILE = "decoder_plan.json"  # the pruned variant's replayable plan, in the run directory and beside the weights
PLAN_KIND = "turbo-edge-decoder-plan"


def build_decoder(cfg: DecoderTrainConfig, vae_config: dict[str, Any]) -> TinyDecoder:
    """The untrained tiny decoder for this autoencoder (seeded: a resumed run builds the same one before loading)."""
    check_autoencoder(vae_config)
    torch.manual_seed(cfg.seed)
    build = TinyDecoder.for_autoencoder_wan if vae_config.get("_class_name") == "AutoencoderKLWan" else TinyDecoder.for_autoencoder_kl
    return build(vae_config, channels=cfg.channels or None, width=cfg.width, blocks=cfg.blocks, memory=cfg.memory)


def check_autoencoder(vae_config: dict[str, Any]) -> None:
    name = vae_config.get("_class_name", "AutoencoderKL")
    if name not in ("AutoencoderKL", "AutoencoderKLWan"):
        raise ValueError(f"decoder train handles AutoencoderKL (UNet family) and AutoencoderKLWan (DiT family); this model's vae is a {name}")


def make_decoder_plan(cfg: DecoderTrainConfig, vae: torch.nn.Module, source: train_data.DataSource) -> dict[str, Any]:
    """The pruned variant's plan: ``cfg.plan`` read back, or made here. Units: ``cfg.remove``, else the
    ``remove_count`` whose removal alone changes the full decoder's frames least (MSE on the source's first
    ``importance_clips`` clips); then, with ``channel_ratio``, the channels torch-pruning keeps in each resnet."""
    check_autoencoder(dict(vae.config))
    if cfg.plan:
        plan = json.loads(Path(cfg.plan).read_text())
        if plan.get("kind") != PLAN_KIND:
            raise ValueError(f"--plan {cfg.plan} is not a decoder plan (written by `decoder train --variant pruned` as {PLAN_FILE})")
        if plan.get("vae_config") != _vae_identity(vae):
            raise ValueError(f"--plan {cfg.plan} was made for another autoencoder ({plan.get('vae_config')}), not this model's")
        return plan
    latents = source.head(min(cfg.importance_clips, len(source))).x0
    table = measure_importance(vae, latents)
    removed = list(cfg.remove) or [row["unit"] for row in table[: cfg.remove_count]]
    decoder = pruned_class(vae).from_vae(vae, removed)
    kept = decoder.choose_channels(cfg.channel_ratio, latents) if cfg.channel_ratio > 0 else {}
    return {"kind": PLAN_KIND, "version": 1, "vae_config": _vae_identity(vae), "removed": removed, "kept": kept,
            "channel_ratio": cfg.channel_ratio, "importance": table, "importance_clips": int(len(latents))}


def _vae_identity(vae: torch.nn.Module) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(vae.config).items() if not k.startswith("_")}


def apply_decoder_plan(vae: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module:
    """Replay ``plan`` on the full decoder's weights (what trains is what the saved config rebuilds)."""
    cls = pruned_class(vae)
    decoder = cls.from_vae(vae, plan["removed"])
    for name, keep in plan["kept"].items():
        cls.narrow(decoder.decoder.get_submodule(name), torch.tensor(keep))
    decoder.register_to_config(widths={name: len(keep) for name, keep in plan["kept"].items()})
    return decoder


class Distillation:
    """The frozen full decoder (target and perceptual features), the trainable tiny decoder, the optional discriminator."""

    def __init__(self, cfg: DecoderTrainConfig, vae: torch.nn.Module, device_type: str = "cpu", plan: dict[str, Any] | None = None,
                 init: dict[str, torch.Tensor] | None = None) -> None:
        self.cfg = cfg
        self.autocast = lambda: autocast(cfg.loop.mixed_precision, device_type)
        student = build_decoder(cfg, dict(vae.config)) if plan is None else apply_decoder_plan(vae, plan)
        if init is not None:  # init_decoder's weights (checked against this architecture and autoencoder)
            student.load_state_dict(init)
        self.full = full_decoder_target(vae)  # after the copy: the target's weights are frozen in place
        self.tiny = student.train().requires_grad_(True)
        self.disc = PatchDiscriminator(cfg.disc_width) if cfg.adv_weight > 0 else None

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = [{"params": list(self.tiny.parameters()), "lr": self.cfg.loop.lr}]
        if self.disc is not None:
            groups.append({"params": list(self.disc.parameters()), "lr": self.cfg.disc_lr})
        return groups

    def adversarial(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.adv_start

    def loss(self, x0: torch.Tensor, step: int, tiny: torch.nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        with torch.no_grad(), self.autocast():
            target = self.full.frames(x0).float()  # step 2
        with self.autocast():
            pred = tiny.frames_unclamped(x0).float() if hasattr(tiny, "frames_unclamped") else tiny.module.frames_unclamped(x0).float()
        self.last = (target, pred.detach())
        diff = pred - target  # [B, F, 3, H, W]
        per_l1, per_mse = diff.abs().mean(dim=(0, 2, 3, 4)), diff.pow(2).mean(dim=(0, 2, 3, 4))  # step 4, per frame position
        weights = frame_weights(per_mse.detach(), cfg.frame_balance)
        l1, mse = (per_l1 * weights).mean(), (per_mse * weights).mean()
        total = cfg.l1_weight * l1 + cfg.mse_weight * mse
        metrics = {"loss_l1": l1.item(), "loss_mse": mse.item()}
        if cfg.frame_balance > 0:
            metrics["last_frame_weight"] = weights[-1].item()
        if cfg.perceptual_weight > 0:
            with self.autocast():
                with torch.no_grad():
                    ref = [f.float() for f in self.full.features(target)]
                feats = [f.float() for f in self.full.features(pred)]
            perceptual = perceptual_distance(feats, ref)
            total = total + cfg.perceptual_weight * perceptual
            metrics["loss_perceptual"] = perceptual.item()
        if self.adversarial(step):
            assert self.disc is not None
            self.disc.requires_grad_(False)
            with self.autocast():
                g = -self.disc(pred).float().mean()
            self.disc.requires_grad_(True)
            total = total + cfg.adv_weight * g
            metrics["loss_adv_g"] = g.item()
        metrics["loss"] = total.item()
        return total, metrics

    def discriminator_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Step 5, on the frames of the last ``loss`` call: hinge, full decoder real, tiny decoder fake."""
        assert self.disc is not None
        target, pred = self.last
        with self.autocast():
            real, fake = self.disc(target).float(), self.disc(pred).float()
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return loss, {"loss_disc": loss.item()}


def frame_weights(per_frame_error: torch.Tensor, balance: float) -> torch.Tensor:
    """Weights of the frame positions, mean 1: each position's share of the error to the power ``balance`` (0: all 1).
    A causal decoder's last frame is the hardest (docs/decisions.md: 25 dB where the others had 30-31), and a mean over
    frames lets the easy ones dominate; weighing by the error moves the effort to where it is lost."""
    if balance == 0:
        return torch.ones_like(per_frame_error)
    w = (per_frame_error / per_frame_error.mean().clamp_min(1e-12)).clamp_min(1e-6) ** balance
    return w / w.mean()


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based): 1, or a cosine from 1 to 0 over ``steps``."""
    return 1.0 if schedule == "constant" else 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def init_decoder(cfg: DecoderTrainConfig, vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``init``: that model directory's tiny decoder weights, refused in one line unless it has this run's architecture
    and was made for this model's autoencoder (the same weights, to float16 rounding: a shipped model stores them in
    float16)."""
    from turbo_edge.core.tiny_decoder import load_tiny_decoder

    path = resolve_model_path(cfg.init)
    check_layout(path)
    source = load_tiny_decoder(path)
    mine, theirs = (json.loads(json.dumps(dict(d.config), default=str)) for d in (build_decoder(cfg, dict(vae.config)), source))  # tuples as lists
    arch = {k: (mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs) if not k.startswith("_") and mine.get(k) != theirs.get(k)}
    if arch:
        raise ValueError(f"init {cfg.init}: its tiny decoder has another architecture ({', '.join(f'{k} {b}, here {a}' for k, (a, b) in sorted(arch.items()))}); "
                         "set --width / --channels / --blocks to match it")
    check_same_autoencoder(resolve_model_path(cfg.model), path, f"init {cfg.init}")
    return source.state_dict()


def held_out_latents(cfg: DecoderTrainConfig, out: Path) -> torch.Tensor | None:
    """The latents PSNR / SSIM are measured on: ``val_data``'s first ``val_clips``, or without ``--data`` the world's val
    split prepared for the model under ``OUT/val``; None where neither applies (a user's --data with no --val-data)."""
    if cfg.val_clips == 0:
        return None
    if cfg.val_data:
        data = train_data.load_checked(cfg.val_data, cfg.model, flag="--val-data")
    elif not cfg.data:
        from turbo_edge.core.world_export import world_data

        data = train_data.load_checked(world_data(cfg.model, cfg.val_clips, cfg.seed, out / "val", split="val"), cfg.model)
    else:
        log.info("no --val-data: the tiny decoder is not scored on held-out latents (the card records no quality)")
        return None
    return train_data.DataSource(data, seed=cfg.seed).head(min(cfg.val_clips, len(data))).x0


def decoder_variant(cfg: DecoderTrainConfig, src: Path, tiny: torch.nn.Module, vae: torch.nn.Module, quality: dict[str, Any],
                    plan: dict[str, Any] | None = None) -> DecoderVariant:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    steps = [cfg.command_line("decoder train", first=("model", "out", "steps"))]
    if cfg.data:  # latents `decoder samples` drew from the student are made, not brought: their command comes first
        from turbo_edge.core.prepared import read_index
        from turbo_edge.decoder.samples import SOURCE_KIND

        index = read_index(cfg.data)
        command = index.get("command")
        if (index.get("source") or {}).get("kind") == SOURCE_KIND and isinstance(command, str) and command.startswith("turbo-edge decoder samples "):
            steps.insert(0, command)
    if cfg.init is not None:  # the decoder it started from is part of how it was made: that one's own line first
        start = read_card(resolve_model_path(cfg.init)).decoders.get(cfg.variant)
        before = start.lineage.details.get("reproduce") if start is not None and start.lineage is not None else None
        if before:
            steps.insert(0, before)
    reproduce = " && ".join(steps)
    details: dict[str, Any] = {"params_full_decoder": count(vae.decoder) + count(vae.post_quant_conv or torch.nn.Identity()),
                               "params_decoder": count(tiny), "reproduce": reproduce}
    if plan is not None:
        details.update(removed=plan["removed"], channel_ratio=plan["channel_ratio"], narrowed=sorted(plan["kept"]))
    lineage = Lineage(stage="decoder_train", parent=cfg.model if cfg.model in ALIASES else str(src), config=cfg.to_dict(),
                      step=cfg.loop.steps, plans=(PLAN_FILE,) if plan is not None else (), details=details)
    folder = TINY_FOLDER if cfg.variant == "tiny" else PRUNED_FOLDER
    return DecoderVariant(folder=folder, cls=type(tiny).__name__, lineage=lineage, quality=quality)


def save_with_decoder(src: Path, out: Path, name: str, tiny: torch.nn.Module, variant: DecoderVariant, reproduce: str,
                      plan: dict[str, Any] | None = None) -> Path:
    """``src`` copied to ``out`` with ``tiny`` in ``variant.folder`` (and its plan beside its weights) and the card
    naming it, in one atomic swap."""
    with staged_dir(out, MODEL_INDEX, overwrite=True, in_run_dir=True) as tmp:  # inside this stage's own run directory
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(variant.folder, ".*"))
        tiny.save_pretrained(tmp / variant.folder, safe_serialization=True)
        if plan is not None:
            (tmp / variant.folder / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
        card = read_card(src)
        if not card.present:  # a third-party model: a card of unknown geometry that records only the decoder
            card = ModelCard()
        step = reproduce
        card = dataclasses.replace(card, decoders={**card.decoders, name: variant},
                                   reproduce=f"{card.reproduce} && {step}" if card.reproduce and step not in card.reproduce else (card.reproduce or step))
        write_card(card, tmp)
    return out


def train(cfg: DecoderTrainConfig) -> Path:
    """Run (or resume) the distillation; returns the model directory ``cfg.out/model``."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    out = Path(cfg.out)
    src = resolve_model_path(cfg.model)
    check_layout(src)
    model = load_teacher(cfg.model)  # the layout and weights are checked before the run directory is claimed
    check_autoencoder(dict(model.vae.config))
    init = init_decoder(cfg, model.vae) if cfg.init is not None else None  # refused before the run directory is claimed
    if cfg.val_data and cfg.val_clips:  # scored at the end of the run: a DATA made for another model is refused now, not then
        train_data.load_checked(cfg.val_data, cfg.model, flag="--val-data")
    claim_run_dir(out, CONFIG_FILE)
    cfg.save(out / CONFIG_FILE)
    accel = Accelerator(cpu=not torch.cuda.is_available())
    with accel.main_process_first():  # the world is prepared once
        source = train_data.open_source(cfg.data, cfg.model, seed=cfg.seed, world_clips=cfg.loop.dataset_clips, work=out,
                                        mix=cfg.loop.mix_shards)
    plan = None
    if cfg.variant == "pruned":
        plan = make_decoder_plan(cfg, model.vae, source)
        (out / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
        log.info("decoder plan: removed %s, %d resnets narrowed (ratio %g)", plan["removed"], len(plan["kept"]), plan["channel_ratio"])
    dist = Distillation(cfg, model.vae, device_type=accel.device.type, plan=plan, init=init)
    opt = adamw(dist.parameter_groups(), lean=cfg.loop.lean_optimizer)
    identity = {"removed": plan["removed"], "kept": plan["kept"]} if plan is not None else {}
    chash = ckpt.config_hash({**cfg.training_hash_fields(), "vae": _vae_identity(model.vae), **identity})
    modules: dict[str, Any] = {"decoder": dist.tiny}
    if dist.disc is not None:
        modules["discriminator"] = dist.disc
    start, meta = 0, {}
    last = ckpt.latest_checkpoint(out / "ckpt")
    if last is not None:
        meta = ckpt.load_checkpoint(last, modules, opt, expected_config_hash=chash)
        start = int(meta["step"])
        log.info("resumed decoder training from %s (step %d)", last, start)
    prepared = accel.prepare(dist.tiny, opt) if dist.disc is None else accel.prepare(dist.tiny, dist.disc, opt)
    tiny, opt = prepared[0], prepared[-1]
    rank, ws = accel.process_index, accel.num_processes
    reader = source.reader(rank, ws, max(1, cfg.loop.batch // ws), resume=meta)
    bar = tqdm(total=cfg.loop.steps, initial=start, desc="decoder", disable=not accel.is_main_process, dynamic_ncols=True)
    base_lrs = [group["lr"] for group in dist.parameter_groups()]  # the config's (a resumed optimiser holds the last scheduled)
    for step in range(start, cfg.loop.steps):
        for group, lr in zip(opt.param_groups, base_lrs):  # a function of the step alone: a resumed run gets the same rates
            group["lr"] = lr * lr_factor(cfg.lr_schedule, step, cfg.loop.steps)
        batch = reader.next(step)
        if cfg.loop.read_log:
            train_data.log_read(out, rank, step + 1, batch)
        loss, metrics = dist.loss(batch.x0, step, tiny)
        opt.zero_grad(set_to_none=True)
        accel.backward(loss)
        accel.clip_grad_norm_(tiny.parameters(), cfg.loop.grad_clip)
        opt.step()
        if dist.adversarial(step):
            opt.zero_grad(set_to_none=True)
            disc_loss, disc_metrics = dist.discriminator_loss()
            accel.backward(disc_loss)
            opt.step()
            metrics.update(disc_metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k in ("loss", "loss_l1")}, refresh=False)
        bar.update(1)
        done = step + 1
        if done % cfg.loop.log_every == 0 or done == cfg.loop.steps:
            metrics = mean_over_ranks(accel, metrics)
            if accel.is_main_process:
                ckpt.log_jsonl(out / "log.jsonl", {"step": done, **metrics, **process_memory(), "time": time.time()})
        if accel.is_main_process and (done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.steps):
            ckpt.save_checkpoint(out / "ckpt", modules, opt, {"step": done, "config_hash": chash, **reader.checkpoint_state(done)})
    bar.close()
    accel.wait_for_everyone()
    model_dir = out / "model"
    if accel.is_main_process:
        decoder = dist.tiny.eval().requires_grad_(False)
        latents = held_out_latents(cfg, out)
        quality = frame_quality(decoder, dist.full, latents) if latents is not None else {}
        if quality:
            log.info("%s decoder vs full on %d held-out clips: PSNR %.2f dB, SSIM %.4f", cfg.variant, quality["clips"], quality["psnr_db"],
                     quality["ssim"])
        variant = decoder_variant(cfg, src, decoder, model.vae, quality, plan)
        save_with_decoder(src, model_dir, cfg.variant, decoder, variant, variant.lineage.details["reproduce"], plan)
    return model_dir
