"""Prune a consistency student (VDMini) and recover it on HF Accelerate, resumable, logged as JSON lines.

Pruning is the block plan (plan.py) and then, with ``channel_ratio > 0``, a channel plan made by torch-pruning
on the block-pruned student (channels.py), or for a DiT a head / FFN plan measured on the student's calls
(dit_widths.py). Channel pruning narrows only widths inside layers, so every down /
up block keeps its output width and the ICD / MCA taps below match features one to one, as after block surgery.

The unpruned student is the pruned student's teacher. Per iteration (compare distill/consistency.py):

1. data latents x0, a solver-grid timestep t and a guidance w per sample, x_t = alpha_t x0 + sigma_t eps;
2. both students' consistency outputs f(x_t, t, w); the unpruned one under no_grad, with its block features;
3. loss_cd = huber(f_pruned, f_unpruned). The unpruned student already *is* a consistency function, so its
   output at the same (x_t, t, w) is the exact target the pruned one must reproduce: no solver step, no
   bootstrapping on the pruned model's own (damaged) output, one teacher call instead of two;
4. + icd_weight * per-frame feature L2 at every down / up block output (ICD);
5. + mca_weight * hinge generator loss of a multi-frame discriminator on one up block's features (MCA);
6. discriminator step: hinge loss, unpruned features real, pruned features fake.

Batches and noise are pure functions of (seed, step, rank); dropout draws from torch's global RNG, which
checkpoints save, so a resumed run is the uninterrupted one. ``loop.mixed_precision`` runs every network pass
(both students, the discriminator) under bf16 autocast with the losses in fp32; ``loop.gradient_checkpointing``
recomputes the pruned student's block activations; log lines carry current and peak resident memory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import consistency as cd
from turbo_edge.core import replay, train_data
from turbo_edge.core.denoiser import call_denoiser, family_of
from turbo_edge.core.pipeline_io import ALIASES, T2VModel, load_denoiser, load_teacher, resolve_model_path
from turbo_edge.core.rewards.loss import RewardLoss
from turbo_edge.core.sampling import encode_text
from turbo_edge.core.training import adamw, autocast, mean_over_ranks, store_frozen_for_autocast
from turbo_edge.prune import channels, dit, dit_widths, losses
from turbo_edge.prune import importance as imp
from turbo_edge.prune.artifact import save_pruned
from turbo_edge.spec import param
from turbo_edge.spec import plan as plans
from turbo_edge.spec.card import Lineage, ModelCard, read_card
from turbo_edge.spec.configs import PruneConfig
from turbo_edge.spec.configs.train import reward_terms
from turbo_edge.spec.host import process_memory
from turbo_edge.spec.outputs import claim_run_dir
from turbo_edge.spec.plan import CHANNEL_PLAN_FILE, PLAN_FILE
from turbo_edge.spec.sampler import SamplerSpec

log = logging.getLogger(__name__)


def _rng(cfg: PruneConfig, step: int, rank: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, step, rank, stream])


def check_student(student: T2VModel) -> SamplerSpec:
    """Refuse models the pruner cannot use, before any training starts; returns the sampler contract."""
    kind = student.card.kind
    if kind != "student":
        raise ValueError(f"{student.path} is a {kind}, not a consistency student: prune the output of `turbo-edge distill`")
    sampler = student.card.sampler
    if sampler is None or sampler.kind != "consistency":
        raise ValueError(f"{student.path}'s turbo_edge.json has no consistency sampler contract")
    return sampler


def resolve_plan(cfg: PruneConfig, config: dict[str, Any], table: dict[str, Any] | None) -> dict[str, Any] | None:
    """The block plan this run applies: ``cfg.plan`` replayed (validated against this architecture), made by
    ``cfg.rule``, or ``None`` for rule "none" (channel pruning only)."""
    if cfg.plan:
        plan = plans.read_plan(cfg.plan)
        plans.validate_plan(plan, config)
        return plan
    if cfg.rule == "none":
        return None
    if cfg.rule == "lowest_cost":
        if table is None:
            raise ValueError("the lowest_cost rule needs the importance table: set importance_clips >= 1")
        return plans.lowest_cost_plan(config, table, cfg.remove_count)
    if cfg.rule == "vdmini" and plans.is_dit(config):
        return plans.vdmini_plan(config, table, cfg.remove_count)
    return plans.RULES[cfg.rule](config)


def resolve_channel_plan(cfg: PruneConfig, unet: torch.nn.Module, plan: dict[str, Any] | None,
                         calls: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The width plan for ``unet`` after ``plan``'s block surgery (``None`` when ``channel_ratio`` is 0): a UNet's
    channel plan (torch-pruning), or a DiT's head / FFN plan measured on ``calls`` (``dit_width_calls``).

    Made from the unpruned student's weights (and, for a DiT, its calls on the importance clips); a pure function of
    them and ``cfg`` (random importance is seeded), so a resumed run makes the same plan (the checkpoint's config hash
    includes its id).
    """
    if cfg.channel_ratio <= 0:
        return None
    blocks = copy.deepcopy(unet)
    if plan is not None:
        family_of(blocks).apply_plan(blocks, plan)
    if plans.is_dit(replay.base_config(unet)):
        if not calls:
            raise ValueError("a DiT's head / FFN plan is measured on the student's own calls: set importance_clips >= 1")
        return dit_widths.make_head_ffn_plan(blocks, cfg.channel_ratio, calls, cfg.channel_importance, block_plan=plan, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    return channels.make_channel_plan(blocks, cfg.channel_ratio, cfg.channel_importance, block_plan=plan)


def dit_width_calls(cfg: PruneConfig, student: T2VModel, sampler: SamplerSpec, source: train_data.DataSource) -> list[dict[str, Any]]:
    """The student's calls a DiT head / FFN plan is measured on: the importance clips, noised at the sampler's
    ``importance_steps`` timesteps, with their stored text and the student's guidance (as the block importance)."""
    head = source.head(cfg.importance_clips)
    return dit.student_calls(sampler, sampler.schedule(student.scheduler_config), head.x0, head.text, float(sampler.guidance), cfg.seed,
                             cfg.importance_steps)


def importance_table(cfg: PruneConfig, student: T2VModel, sampler: SamplerSpec, source: train_data.DataSource,
                     out: Path) -> dict[str, Any]:
    """Measure (or reuse, when made for this architecture and settings) the run's importance table on the
    source's first ``importance_clips`` clips."""
    path = out / "importance.json"
    settings = {"clips": cfg.importance_clips, "steps": cfg.importance_steps, "seed": cfg.seed, **source.identity()}
    arch = plans.architecture_hash(replay.base_config(student.denoiser))
    if path.is_file():
        table = json.loads(path.read_text())
        if table.get("architecture_hash") == arch and table.get("settings") == settings:
            log.info("reusing importance table %s", path)
            return table
    head = source.head(cfg.importance_clips)  # with the DATA's stored text embeddings
    guidance = float(student.card.sampler.guidance)
    if plans.is_dit(replay.base_config(student.denoiser)):
        table = dit.measure_student_importance(student.denoiser, sampler, sampler.schedule(student.scheduler_config), head.x0, head.text,
                                               guidance, cfg.seed, cfg.importance_steps)
    else:
        table = imp.measure_importance(student.denoiser, sampler, student.scheduler_config, head.x0, head.text, guidance, cfg.seed,
                                       cfg.importance_steps)
    table["settings"] = settings
    imp.write_table(table, out)
    return table


class Recovery:
    """The frozen unpruned student, the trainable pruned one, feature taps and the MCA discriminator."""

    def __init__(self, cfg: PruneConfig, student: T2VModel, sampler: SamplerSpec, plan: dict[str, Any] | None,
                 channel_plan: dict[str, Any] | None = None, device_type: str = "cpu", init: torch.nn.Module | None = None) -> None:
        self.cfg, self.student, self.sampler = cfg, student, sampler
        self.autocast = lambda: autocast(cfg.loop.mixed_precision, device_type)
        self.sched = sampler.schedule(student.scheduler_config)  # DDPM or flow: (alpha, sigma) per index
        self.grid = param.solver_timesteps(len(self.sched), int(sampler.origin_steps))
        self.reference = student.denoiser.eval().requires_grad_(False)
        torch.manual_seed(cfg.seed)
        self.pruned = copy.deepcopy(self.reference)
        if plan is not None:
            student.family.apply_plan(self.pruned, plan)
        if channel_plan is not None:  # replayed, not torch-pruning's own copy: what trains is what load_teacher rebuilds
            student.family.apply_channel_plan(self.pruned, channel_plan, plan)
        if init is not None:  # init_pruned: the same plans, that model's weights (in the reference's dtype)
            try:
                dtype = next(self.pruned.parameters()).dtype
                self.pruned.load_state_dict({k: v.to(dtype) for k, v in init.state_dict().items()})
            except RuntimeError as exc:
                raise ValueError(f"init_pruned {cfg.init_pruned} does not fit its own plans on this student "
                                 f"({str(exc).splitlines()[0]}); prune it from this student") from None
        self.rewards = RewardLoss(student, reward_terms(cfg.rewards))
        self.pruned.requires_grad_(True).train()
        # The frozen target under bf16: half its weight memory, the same precision (after the copy: the pruned UNet trains in fp32).
        store_frozen_for_autocast(self.reference, cfg.loop.mixed_precision)
        if cfg.loop.gradient_checkpointing:
            student.family.enable_gradient_checkpointing(self.pruned)
        pairs = losses.matched_pairs(self.reference, plan)
        self.layers = list(pairs)
        self.dit = plans.is_dit(dict(self.pruned.config))
        if self.dit:  # the discriminator sees a kept block's tokens as frames (mca_up_block: its rank among the kept)
            self.mca_layer = self.layers[cfg.mca_up_block % len(self.layers)]
            width = int(self.pruned.config.num_attention_heads * self.pruned.config.attention_head_dim)
            self.patch = tuple(int(p) for p in self.pruned.config.patch_size)
        else:
            self.mca_layer = f"up_blocks.{cfg.mca_up_block % len(self.pruned.up_blocks)}"
            width = self.pruned.up_blocks[cfg.mca_up_block].resnets[-1].out_channels  # block output: never channel-pruned
        self.disc = losses.MultiFrameDiscriminator(width, cfg.disc_width) if cfg.mca_weight > 0 else None
        tapped = self.layers if cfg.icd_weight > 0 else ([self.mca_layer] if self.disc is not None else [])
        self.tap_ref = losses.FeatureTap(self.reference, {k: pairs[k][0] for k in tapped})
        self.tap_pruned = losses.FeatureTap(self.pruned, {k: pairs[k][1] for k in tapped})

    def parameter_groups(self) -> list[dict[str, Any]]:
        # One optimizer keeps checkpoints (one optimizer each) exact; each of the two steps has one side's grads.
        groups = [{"params": list(self.pruned.parameters()), "lr": self.cfg.loop.lr}]
        if self.disc is not None:
            groups.append({"params": list(self.disc.parameters()), "lr": self.cfg.disc_lr})
        return groups

    def _output(self, net: torch.nn.Module, x_t: torch.Tensor, t: np.ndarray, cond: torch.Tensor, w_emb: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            out = call_denoiser(net, x_t, torch.from_numpy(self.sched.model_timestep(t)), cond, w_emb).float()
        s = self.sampler
        return cd.consistency_output(out, x_t, t, self.sched, s.prediction_type, s.timestep_scaling, s.sigma_data)

    def frames(self, x0: torch.Tensor) -> int:
        """Frames per clip in the tapped features: latent frames (a DiT: over its temporal patch)."""
        return x0.shape[2] // self.patch[0] if self.dit else x0.shape[2]

    def loss(self, x0: torch.Tensor, prompts: list[str], step: int, rank: int, pruned: torch.nn.Module,
             text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, b = self.cfg, x0.shape[0]
        rng = _rng(cfg, step, rank, 1)
        # Step 1: timestep on the solver grid, guidance, noised latents.
        t = self.grid[rng.integers(0, len(self.grid), size=b)]
        w = rng.uniform(cfg.w_min, cfg.w_max, size=b)
        w_emb = torch.from_numpy(param.guidance_embedding(w, int(self.sampler.w_embedding_dim))).float()
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(_rng(cfg, step, rank, 2).integers(2**62))))
        alpha, sigma = (cd.coef(v, x0) for v in self.sched.alpha_sigma(t))
        x_t = param.add_noise(x0, eps, alpha, sigma)
        if self.dit:  # the taps unpatchify the blocks' tokens to this grid
            grid = (x0.shape[2] // self.patch[0], x0.shape[3] // self.patch[1], x0.shape[4] // self.patch[2])
            self.tap_ref.grid = self.tap_pruned.grid = grid
        with torch.no_grad():
            cond = encode_text(self.student, prompts) if text is None else text  # text: a DATA's stored embeddings
            # Step 2: the unpruned student's consistency output and features (the target).
            f_ref = self._output(self.reference, x_t, t, cond, w_emb)
        f_pruned = self._output(pruned, x_t, t, cond, w_emb)
        # Step 3: consistency loss against the unpruned student at the same (x_t, t, w).
        loss_cd = cd.pseudo_huber(f_pruned, f_ref, cfg.huber_c).mean()
        total, metrics = loss_cd, {"loss_cd": loss_cd.item()}
        if cfg.icd_weight > 0:
            # Step 4: Individual Content Distillation.
            loss_icd = losses.icd_loss(self.tap_pruned.features, self.tap_ref.features)
            total = total + cfg.icd_weight * loss_icd
            metrics["loss_icd"] = loss_icd.item()
        if self.disc is not None:
            # Step 5: Multi-frame Content Adversarial, generator side (the discriminator's weights stay fixed).
            self.disc.requires_grad_(False)
            with self.autocast():
                logits = self.disc(self.tap_pruned.features[self.mca_layer], self.frames(x0)).float()
            self.disc.requires_grad_(True)
            loss_mca = losses.hinge_generator_loss(logits)
            total = total + cfg.mca_weight * loss_mca
            metrics["loss_mca_g"] = loss_mca.item()
        if self.rewards:
            # Step 6: rewards on the pruned student's single-step x0 (distill's terms, through the frozen autoencoder).
            with self.autocast():
                loss_reward, reward_metrics = self.rewards(f_pruned, prompts, _rng(cfg, step, rank, 3))
            total = total + loss_reward
            metrics.update(reward_metrics)
        metrics["loss"] = total.item()
        return total, metrics

    def discriminator_loss(self, frames: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Step 7: hinge loss on the features of the last ``loss`` call; unpruned = real, pruned = fake."""
        assert self.disc is not None
        real = self.tap_ref.features[self.mca_layer].detach()
        fake = self.tap_pruned.features[self.mca_layer].detach()
        with self.autocast():
            real_logits, fake_logits = self.disc(real, frames).float(), self.disc(fake, frames).float()
        loss = losses.hinge_discriminator_loss(real_logits, fake_logits)
        return loss, {"loss_disc": loss.item()}

    def close(self) -> None:
        self.tap_ref.close()
        self.tap_pruned.close()


def _count(unet: torch.nn.Module) -> int:
    return sum(p.numel() for p in unet.parameters())


def pruned_card(cfg: PruneConfig, student: T2VModel, plan: dict[str, Any] | None, step: int, params: tuple[int, int],
                channel_plan: dict[str, Any] | None = None) -> ModelCard:
    lineage = Lineage(
        stage="prune", parent=cfg.student if cfg.student in ALIASES else str(student.path),  # an alias stays portable
        config=cfg.to_dict(), step=step,
        plans=tuple(f for f, p in ((PLAN_FILE, plan), (CHANNEL_PLAN_FILE, channel_plan)) if p is not None),
        details={"rule": plan["rule"] if plan else "none", "removed": plan["removed"] if plan else [],
                 "channel_ratio": channel_plan["ratio"] if channel_plan else 0.0,
                 "channel_groups": len(channel_plan.get("groups") or channel_plan.get("blocks") or []) if channel_plan else 0,
                 "params_student": params[0], "params_pruned": params[1]},
    )
    return dataclasses.replace(student.card, kind="pruned", lineage=lineage, weights_dtype=None,
                               reproduce=cfg.command_line("prune", first=("student", "out", "steps")))


def _student_scheduler(student: T2VModel) -> Any:
    """The student's own scheduler class (distill writes an LCMScheduler; load_teacher reads every one as DDIM)."""
    import diffusers

    index = json.loads((Path(student.path) / "model_index.json").read_text())
    cls = getattr(diffusers, index.get("scheduler", [None, "DDIMScheduler"])[1], diffusers.DDIMScheduler)
    return cls.from_pretrained(Path(student.path) / "scheduler")


def _init_pruned(cfg: PruneConfig, student: T2VModel) -> tuple[torch.nn.Module, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """``init_pruned``'s transformer / UNet and its plans; refused unless ``prune`` made it from this run's student."""
    path = resolve_model_path(cfg.init_pruned)
    card = read_card(path)  # checked before any weights load
    if card.kind != "pruned":
        raise ValueError(f"init_pruned {cfg.init_pruned} is a {card.kind}, not a pruned student: give a `turbo-edge prune` output")
    parent = card.lineage.parent if card.lineage else ""
    if not parent or resolve_model_path(parent).resolve() != Path(student.path).resolve():
        raise ValueError(f"init_pruned {cfg.init_pruned} was pruned from {parent or 'an unrecorded model'}, not from {cfg.student}: "
                         "set student to its parent")
    return load_denoiser(path)


def prune(cfg: PruneConfig) -> Path:
    """Run (or resume) pruning + recovery; returns the pruned directory ``cfg.out/pruned``."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    out = Path(cfg.out)
    student = load_teacher(cfg.student)
    sampler = check_student(student)
    config = replay.base_config(student.denoiser)
    init = _init_pruned(cfg, student) if cfg.init_pruned else None
    # A DiT's width plan (heads, FFN channels) is measured on the student's own calls, on the importance clips.
    dit_widths_measured = cfg.channel_ratio > 0 and plans.is_dit(config) and init is None
    if dit_widths_measured and cfg.importance_clips < 1:
        raise ValueError("channel_ratio > 0 on a DiT prunes heads and FFN channels measured on the student's calls: set importance_clips >= 1")
    # Bad plans fail here, before data or training; only rules that read measured costs measure importance first
    # (lowest_cost; VDMini's on a DiT, which has no resolution levels to read the rule from).
    needs_table = (cfg.rule == "lowest_cost" or (cfg.rule == "vdmini" and plans.is_dit(config))) and not cfg.plan and init is None
    if needs_table and cfg.importance_clips < 1:
        raise ValueError(f"the {cfg.rule} rule on this model ranks units by measured importance: set importance_clips >= 1")
    if init is not None:  # its own plans, as its directory records them
        plan, channel_plan = init[1]
    else:
        plan = None if needs_table else resolve_plan(cfg, config, None)
        channel_plan = None if needs_table or dit_widths_measured else resolve_channel_plan(cfg, student.denoiser, plan)
    claim_run_dir(out, "prune_config.json")
    cfg.save(out / "prune_config.json")
    accel = Accelerator(cpu=not torch.cuda.is_available())
    with accel.main_process_first():  # the world is prepared once
        source = train_data.open_source(cfg.data, cfg.student, seed=cfg.seed, world_clips=cfg.loop.dataset_clips, work=out,
                                         mix=cfg.loop.mix_shards)
    table = importance_table(cfg, student, sampler, source, out) if cfg.importance_clips > 0 and init is None else None
    if needs_table:
        plan = resolve_plan(cfg, config, table)
    if needs_table or dit_widths_measured:
        calls = dit_width_calls(cfg, student, sampler, source) if dit_widths_measured else None
        channel_plan = resolve_channel_plan(cfg, student.denoiser, plan, calls)
    for plan_file, this in ((plans.PLAN_FILE, plan), (plans.CHANNEL_PLAN_FILE, channel_plan)):
        if this is not None:
            plans.write_plan(this, out / plan_file)
        else:
            (out / plan_file).unlink(missing_ok=True)  # a stale plan from another config must not describe this run
    rec = Recovery(cfg, student, sampler, plan, channel_plan, device_type=accel.device.type, init=init[0] if init else None)
    del init
    opt = adamw(rec.parameter_groups(), lean=cfg.loop.lean_optimizer)
    identity: dict[str, Any] = {"removed": plan["removed"] if plan else [], "architecture": plans.architecture_hash(config)}
    if channel_plan is not None:  # only then: block-only runs keep the hash their checkpoints were written with
        identity["channels"] = plans.channel_plan_id(channel_plan)
    chash = ckpt.config_hash({**cfg.training_hash_fields(), **identity})
    modules: dict[str, Any] = {"pruned": rec.pruned}
    if rec.disc is not None:
        modules["discriminator"] = rec.disc
    start, meta = 0, {}
    last = ckpt.latest_checkpoint(out / "ckpt")
    if last is not None:
        meta = ckpt.load_checkpoint(last, modules, opt, expected_config_hash=chash)
        start = int(meta["step"])
        log.info("resumed pruning from %s (step %d)", last, start)
    prepared = accel.prepare(rec.pruned, opt) if rec.disc is None else accel.prepare(rec.pruned, rec.disc, opt)
    pruned, opt = prepared[0], prepared[-1]
    rank, ws = accel.process_index, accel.num_processes
    per_rank = max(1, cfg.loop.batch // ws)
    reader = source.reader(rank, ws, per_rank, resume=meta)
    params = (_count(rec.reference), _count(rec.pruned))
    if accel.is_main_process:
        log.info("pruned %s, channel ratio %g: %d -> %d UNet parameters (%.1f%%)", plan["removed"] if plan else [],
                 cfg.channel_ratio, *params, 100 * params[1] / params[0])
    bar = tqdm(total=cfg.loop.steps, initial=start, desc="prune", disable=not accel.is_main_process, dynamic_ncols=True)
    for step in range(start, cfg.loop.steps):
        batch = reader.next(step)
        if cfg.loop.read_log:
            train_data.log_read(out, rank, step + 1, batch)
        x0 = batch.x0
        loss, metrics = rec.loss(x0, batch.prompts, step, rank, pruned, text=batch.text)
        opt.zero_grad(set_to_none=True)
        accel.backward(loss)
        accel.clip_grad_norm_(pruned.parameters(), cfg.loop.grad_clip)
        opt.step()
        if rec.disc is not None:
            opt.zero_grad(set_to_none=True)
            disc_loss, disc_metrics = rec.discriminator_loss(rec.frames(x0))
            accel.backward(disc_loss)
            opt.step()
            metrics.update(disc_metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k in ("loss", "loss_cd")}, refresh=False)
        bar.update(1)
        done = step + 1
        if done % cfg.loop.log_every == 0 or done == cfg.loop.steps:
            metrics = mean_over_ranks(accel, metrics)  # on every rank: a collective
            if accel.is_main_process:
                ckpt.log_jsonl(out / "log.jsonl", {"step": done, **metrics, **process_memory(), "time": time.time()})
        if accel.is_main_process and (done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.steps):
            ckpt.save_checkpoint(out / "ckpt", modules, opt, {"step": done, "config_hash": chash, **reader.checkpoint_state(done)})
    bar.close()
    rec.close()
    accel.wait_for_everyone()
    pruned_dir = out / "pruned"
    if accel.is_main_process:
        scheduler = _student_scheduler(student)
        model = T2VModel(copy.deepcopy(rec.pruned).eval(), student.vae, student.text_encoder, student.tokenizer, scheduler,
                         path=student.path, components=student.components)  # path: the student's decoder variants are carried
        card = pruned_card(cfg, student, plan, cfg.loop.steps, params, channel_plan)
        save_pruned(model, plan, pruned_dir, card, channel_plan=channel_plan)
    return pruned_dir
