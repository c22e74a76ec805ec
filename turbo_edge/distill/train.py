"""Reward-augmented consistency distillation (T2V-Turbo) on HF Accelerate, resumable, logged as JSON lines.

Each iteration follows ``consistency.py``'s numbered steps; rewards act on the student's single-step x0
(decoded through the frozen VAE for image / video rewards, used directly by a latent reward), so no gradient
goes through a sampling chain. Motion guidance (T2V-Turbo-v2) augments the teacher's epsilon in the solver;
VSD (DOLLAR) adds a fake-score term. Batches and noise are pure functions of (seed, step, rank).

Memory for real-size teachers (docs/decisions.md): a LoRA student is built in place on the teacher's UNet and the
teacher's calls run with its adapters disabled (one copy of the base weights); network passes may run under bf16
autocast (losses in fp32) and the student's blocks may checkpoint their activations. Each log line carries the
process's current and peak resident memory; in a multi-process run its ``loss`` and ``loss_cd`` are the mean over
every process's batch (``core.training.mean_over_ranks``), the global batch's loss.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import consistency as cd
from turbo_edge.core import train_data
from turbo_edge.core.denoiser import call_denoiser
from turbo_edge.core.pipeline_io import ALIASES, T2VModel, load_teacher, model_family, save_model
from turbo_edge.core.rewards.loss import RewardLoss
from turbo_edge.core.sampling import encode_text
from turbo_edge.core.training import adamw, autocast, mean_over_ranks
from turbo_edge.distill.motion import MotionGuidance
from turbo_edge.distill.student import (
    add_lora,
    attach_guidance_embedding,
    base_weights,
    build_student_unet,
    describe,
    load_init_student,
    merge_lora,
)
from turbo_edge.distill.vsd import VariationalScore
from turbo_edge.spec import param
from turbo_edge.spec.card import Lineage, ModelCard
from turbo_edge.spec.configs import DistillConfig
from turbo_edge.spec.host import MiB, process_memory
from turbo_edge.spec.outputs import claim_run_dir
from turbo_edge.spec.sampler import STUDENT_STEPS, SamplerSpec

log = logging.getLogger(__name__)
SUPPORTED_STEPS = STUDENT_STEPS


def _rng(cfg: DistillConfig, step: int, rank: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, step, rank, stream])


def _gen(cfg: DistillConfig, step: int, rank: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_rng(cfg, step, rank, stream).integers(2**62)))


def check_teacher(teacher: T2VModel) -> None:
    """Refuse teachers the distiller cannot use, before any training starts."""
    if teacher.card.kind != "teacher":
        raise ValueError(f"{teacher.path} is a {teacher.card.kind}, not a teacher: distil from the original teacher")
    if teacher.family.geometry(teacher.denoiser).guidance_dim is not None:
        raise ValueError(f"{teacher.path}'s denoiser already has a guidance embedding: it is a student")
    ptype = teacher.scheduler_config.get("prediction_type", "epsilon")
    if teacher.components.parameterisation == "ddpm" and ptype not in param.PREDICTION_TYPES:
        raise ValueError(f"teacher prediction_type {ptype!r} is not supported; expected one of {param.PREDICTION_TYPES}")
    teacher.schedule  # a flow scheduler the distiller cannot follow (dynamic shifting) is refused here  # noqa: B018


# Motion guidance reads the UNet's decoder temporal self-attention (frame-to-frame maps per spatial position); a
# family whose denoiser has none (a DiT's joint 3D attention) is refused before its weights load (docs/decisions.md).
MOTION_GUIDANCE_FAMILIES = ("unet3d",)


def check_options(cfg: DistillConfig, family: str) -> None:
    """Refuse option / family combinations from ``model_index.json`` alone, before any model loads."""
    if cfg.motion_guidance > 0 and family not in MOTION_GUIDANCE_FAMILIES:
        raise ValueError(f"motion guidance needs a UNet's temporal attention; a {family} teacher has joint 3D attention "
                         f"instead: set motion_guidance=0 (docs/decisions.md, 'Motion guidance for DiTs')")


class Distiller:
    """Holds the frozen teacher, the trainable student and the loss terms for one run."""

    def __init__(self, cfg: DistillConfig, teacher: T2VModel, accel: Any) -> None:
        self.cfg, self.teacher, self.accel = cfg, teacher, accel
        check_teacher(teacher)
        # (alpha, sigma) per timestep index: a DDPM schedule or a flow-matching one; the steps below are written
        # once over it (core.consistency), the network is called at ``sched.model_timestep``.
        self.sched = teacher.schedule
        self.ptype = self.sched.prediction_type
        self.grid = param.solver_timesteps(len(self.sched), cfg.origin_steps)
        torch.manual_seed(cfg.seed)
        # Shared: the student is the teacher's own UNet plus cond_proj and LoRA; the teacher's calls disable both
        # (teacher_pass), so there is one copy of the base weights. Otherwise the student is a second UNet.
        self.shared = cfg.shares_teacher()
        self.device_type = accel.device.type if accel is not None else "cpu"
        if cfg.init_student:
            student = load_init_student(cfg.init_student, teacher.denoiser, cfg.w_embedding_dim)
        elif self.shared:
            student = attach_guidance_embedding(teacher.denoiser, cfg.w_embedding_dim)
        else:
            student = build_student_unet(teacher.denoiser, cfg.w_embedding_dim)
        if cfg.mode == "lora":
            torch.manual_seed(cfg.seed)  # LoRA's random init is the same however the base was built
            student = add_lora(student, cfg.lora_rank)
        self.student = student
        if cfg.loop.gradient_checkpointing:
            teacher.family.enable_gradient_checkpointing(self.student)
        self.student.train()
        self.target = None
        if cfg.target_ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.target = AveragedModel(self.student, multi_avg_fn=get_ema_multi_avg_fn(cfg.target_ema), use_buffers=True)
        self.rewards = RewardLoss(teacher, self.cfg.reward_terms())
        self.motion = None
        if cfg.motion_guidance > 0:

            self.motion = MotionGuidance(teacher.denoiser, self.sched, self.ptype)
        self.vsd = None
        if cfg.vsd_weight > 0:

            self.vsd = VariationalScore(teacher.denoiser, self.sched, self.ptype, cfg)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return autocast(self.cfg.loop.mixed_precision, self.device_type)

    @contextlib.contextmanager
    def teacher_pass(self) -> Iterator[None]:
        """The frozen teacher's UNet calls: no grad, the run's autocast; shared, also the student's adapters off
        (LoRA bypassed, ``cond_proj`` never called without ``timestep_cond``) and eval mode (the student trains
        with the temporal convs' dropout on, the teacher never had it), restored afterwards."""
        with torch.no_grad(), self.autocast():
            if not self.shared:
                yield
                return
            training = self.student.training
            self.student.eval()
            try:
                with self.student.disable_adapter():
                    yield
            finally:
                self.student.train(training)

    def weight_bytes(self) -> int:
        """Bytes of every distinct parameter / buffer storage the teacher's and student's UNets hold."""
        return sum({**base_weights(self.teacher.denoiser), **base_weights(self.student)}.values())

    def parameter_groups(self) -> list[dict[str, Any]]:
        params = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        temporal = [p for n, p in params if "temp_" in n or "transformer_in" in n]
        other = [p for n, p in params if not ("temp_" in n or "transformer_in" in n)]
        groups = [{"params": other, "lr": self.cfg.loop.lr}]
        if temporal:
            groups.append({"params": temporal, "lr": self.cfg.loop.lr * self.cfg.temporal_lr_scale})
        if self.vsd is not None:
            # One optimizer for student and fake score keeps resume exact; each step only has one side's grads.
            groups.append({"params": self.vsd.parameters(), "lr": self.cfg.vsd_lr})
        return groups

    def loss(self, x0: torch.Tensor, prompts: list[str], step: int, rank: int, student: torch.nn.Module,
             text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, b = self.cfg, x0.shape[0]
        rng = _rng(cfg, step, rank, 1)
        # Step 1: solver index n, t = grid[n], s = one solver step earlier (-1 is the clean end).
        n = rng.integers(0, len(self.grid), size=b)
        t = self.grid[n]
        s = t - (self.grid[0] + 1)
        w = torch.from_numpy(rng.uniform(cfg.w_min, cfg.w_max, size=b)).float()
        w_emb = torch.from_numpy(param.guidance_embedding(w.numpy(), cfg.w_embedding_dim))
        with torch.no_grad():
            cond = encode_text(self.teacher, prompts) if text is None else text  # text: a DATA's stored embeddings
            uncond = encode_text(self.teacher, [""] * b)
        # Step 2: noise the clean latents.
        eps = torch.randn(x0.shape, generator=_gen(cfg, step, rank, 2))
        alpha, sigma = (cd.coef(v, x0) for v in self.sched.alpha_sigma(t))
        x_t = param.add_noise(x0, eps, alpha, sigma)
        t_net = torch.from_numpy(self.sched.model_timestep(t))
        # Step 3: the student's consistency output (its single-step x0); losses are fp32 whatever the autocast.
        with self.autocast():
            out = call_denoiser(student, x_t, t_net, cond, w_emb).float()
        f_student = cd.consistency_output(out, x_t, t, self.sched, self.ptype, cfg.timestep_scaling, cfg.sigma_data)
        # Step 4: the teacher's guided solver step from t to s (DDIM; on a flow schedule the Euler step), motion
        # guidance on the noisiest solver steps.
        with self.teacher_pass():
            both = self.teacher.denoise(torch.cat([x_t, x_t]), torch.cat([t_net, t_net]), torch.cat([cond, uncond])).float()
        with torch.no_grad():
            out_c, out_u = both.chunk(2)
            x0_teacher, eps_teacher = cd.guided_x0_eps(out_c, out_u, x_t, t, self.sched, self.ptype, w)
        metrics: dict[str, float] = {}
        if self.motion is not None:
            guided = n >= (1.0 - cfg.motion_fraction) * len(self.grid)
            if guided.any():
                x0_teacher, eps_teacher, energy = self.motion.guide(
                    x_t, x0, t, cond, x0_teacher, eps_teacher, guided, cfg.motion_guidance, seed=step
                )
                metrics["motion_energy"] = energy
        with torch.no_grad():
            x_s = cd.ddim_step(x0_teacher, eps_teacher, s, self.sched)
            # Step 5: the target's consistency output at s (at s = -1 the boundary condition gives x_s itself).
            s_clamped = np.maximum(s, 0)
            target_net = self.target if self.target is not None else student
            with self.autocast():
                out_s = call_denoiser(target_net, x_s, torch.from_numpy(self.sched.model_timestep(s_clamped)), cond, w_emb).float()
            f_target = cd.consistency_output(out_s, x_s, s_clamped, self.sched, self.ptype, cfg.timestep_scaling, cfg.sigma_data)
            f_target = torch.where(torch.from_numpy(s < 0).view(-1, *[1] * (x_s.ndim - 1)), x_s, f_target)
        # Step 6: Huber consistency loss.
        loss_cd = cd.pseudo_huber(f_student, f_target, cfg.huber_c).mean()
        total = loss_cd
        metrics["loss_cd"] = loss_cd.item()
        if self.rewards:
            with self.autocast():
                reward_loss, reward_metrics = self.rewards(f_student, prompts, _rng(cfg, step, rank, 3))
            total = total + reward_loss
            metrics.update(reward_metrics)
        if self.vsd is not None:
            with self.autocast():
                vsd_loss, vsd_metrics = self.vsd.student_loss(f_student, cond, step, rank)
            total = total + cfg.vsd_weight * vsd_loss
            metrics.update(vsd_metrics)
        metrics["loss"] = total.item()
        return total, metrics


def student_card(cfg: DistillConfig, teacher: T2VModel, step: int) -> ModelCard:
    sampler = SamplerSpec.consistency(
        teacher.scheduler_config, cfg.origin_steps, cfg.w_embedding_dim, default_steps=cfg.default_steps,
        supported_steps=SUPPORTED_STEPS, guidance=cfg.default_guidance, timestep_scaling=cfg.timestep_scaling, sigma_data=cfg.sigma_data,
        parameterisation=teacher.components.parameterisation,
    )
    lineage = Lineage(stage="distill", parent=cfg.teacher if cfg.teacher in ALIASES else str(teacher.path),  # an alias stays portable
                      config=cfg.to_dict(), step=step)
    return ModelCard(kind="student", **teacher.card.geometry(), default_guidance=cfg.default_guidance, sampler=sampler,
                     lineage=lineage, reproduce=cfg.command_line("distill", first=("teacher", "out", "init_student", "steps")),
                     fps=teacher.card.fps, guidance_range=(cfg.w_min, cfg.w_max),
                     latent_geometry=teacher.components.autoencoder.geometry(teacher.vae).to_dict())


def export_student(distiller: Distiller, out: str | Path, step: int) -> Path:
    """Merge LoRA into a copy of the student and write the teacher's layout + turbo_edge.json. A DDPM student's
    ``scheduler/`` is diffusers' LCMScheduler on the teacher's schedule; a flow student keeps the teacher's flow
    scheduler (its sampler is the card's consistency contract, which names the shift)."""
    import copy

    from diffusers import LCMScheduler

    unet = merge_lora(copy.deepcopy(distiller.student)).eval()
    t = distiller.teacher
    if t.components.parameterisation == "ddpm":
        sched_cfg = {k: v for k, v in t.scheduler_config.items() if not k.startswith("_")}
        scheduler = LCMScheduler.from_config(sched_cfg, original_inference_steps=distiller.cfg.origin_steps, timestep_scaling=distiller.cfg.timestep_scaling)
    else:
        scheduler = t.scheduler
    model = T2VModel(unet, t.vae, t.text_encoder, t.tokenizer, scheduler, components=t.components)
    return save_model(model, out, card=student_card(distiller.cfg, t, step), overwrite=True, in_run_dir=True)  # inside its own run directory


def train(cfg: DistillConfig) -> Path:
    """Run (or resume) distillation; returns the student directory ``cfg.out/student``."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    check_options(cfg, model_family(cfg.teacher).name)
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    out = claim_run_dir(cfg.out, "distill_config.json")
    cfg.save(out / "distill_config.json")
    accel = Accelerator(cpu=not torch.cuda.is_available())
    with accel.main_process_first():  # a --data is checked before the teacher loads; the world is prepared once
        source = train_data.open_source(cfg.data, cfg.teacher, seed=cfg.seed, world_clips=cfg.loop.dataset_clips, work=out,
                                         mix=cfg.loop.mix_shards)
    teacher = load_teacher(cfg.teacher)
    distiller = Distiller(cfg, teacher, accel)
    opt = adamw(distiller.parameter_groups(), lean=cfg.loop.lean_optimizer)
    chash = ckpt.config_hash(cfg.training_hash_fields())
    modules: dict[str, Any] = {"student": distiller.student}
    if distiller.target is not None:
        modules["target"] = distiller.target
    if distiller.vsd is not None:
        modules["fake_score"] = distiller.vsd.fake
    start, meta = 0, {}
    last = ckpt.latest_checkpoint(out / "ckpt")
    if last is not None:
        meta = ckpt.load_checkpoint(last, modules, opt, expected_config_hash=chash)
        start = int(meta["step"])
        log.info("resumed distillation from %s (step %d)", last, start)
    student, opt = accel.prepare(distiller.student, opt)
    rank, ws = accel.process_index, accel.num_processes
    per_rank = max(1, cfg.loop.batch // ws)
    reader = source.reader(rank, ws, per_rank, resume=meta)
    if accel.is_main_process:
        log.info("student: %s; teacher weights %s (%.0f MiB of UNet weights held)", describe(distiller.student),
                 "shared with the student (adapters disabled)" if distiller.shared else "a separate copy", distiller.weight_bytes() / MiB)
    bar = tqdm(total=cfg.loop.steps, initial=start, desc="distill", disable=not accel.is_main_process, dynamic_ncols=True)
    for step in range(start, cfg.loop.steps):
        batch = reader.next(step)
        if cfg.loop.read_log:
            train_data.log_read(out, rank, step + 1, batch)
        loss, metrics = distiller.loss(batch.x0, batch.prompts, step, rank, student, text=batch.text)
        opt.zero_grad(set_to_none=True)
        accel.backward(loss)
        accel.clip_grad_norm_(student.parameters(), cfg.loop.grad_clip)
        opt.step()
        if distiller.target is not None:
            distiller.target.update_parameters(distiller.student)
        if distiller.vsd is not None:
            opt.zero_grad(set_to_none=True)
            with distiller.autocast():
                fake_loss, fake_metrics = distiller.vsd.fake_score_loss(step, rank)
            accel.backward(fake_loss)
            opt.step()
            metrics.update(fake_metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k in ("loss", "loss_cd")}, refresh=False)
        bar.update(1)
        done = step + 1
        if done % cfg.loop.log_every == 0 or done == cfg.loop.steps:
            metrics = mean_over_ranks(accel, metrics)  # on every rank: a collective
            if accel.is_main_process:
                ckpt.log_jsonl(out / "log.jsonl", {"step": done, **metrics, **process_memory(), "time": time.time()})
        if accel.is_main_process and (done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.steps):
            state = {"step": done, "config_hash": chash, **reader.checkpoint_state(done)}
            ckpt.save_checkpoint(out / "ckpt", modules, opt, state)
    bar.close()
    accel.wait_for_everyone()
    student_dir = out / "student"
    if accel.is_main_process:
        export_student(distiller, student_dir, cfg.loop.steps)
    return student_dir
