"""The training stages' configs: teacher, rewards, evaluator, distillation, pruning. Torch-free.

Distillation and pruning share one nested ``TrainLoop`` (steps, batch, optimiser, data, checkpoints); their own
fields are what makes each stage what it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from turbo_edge.spec.config import StageConfig, move_into, opt
from turbo_edge.spec.configs.data import LATENT_DTYPES, MAX_SHARD_SIZE
from turbo_edge.spec.plan import BLOCK_RULES, CHANNEL_IMPORTANCES

# The reward registry's names (core/rewards/registry.py maps them to model classes; a test keeps them equal).
REWARD_NAMES = ("builtin-image", "builtin-video", "clip", "xclip", "latent")
MIXED_PRECISIONS = ("no", "bf16")
# Where the distiller's frozen teacher lives (docs/decisions.md): "shared" runs it as the LoRA student's own base
# weights with the adapters disabled (one copy, as T2V-Turbo does); "copy" keeps a second UNet; "auto" shares
# wherever that is exact (a LoRA student started from the teacher, no motion guidance or VSD).
TEACHER_WEIGHTS = ("auto", "shared", "copy")
TEACHER_FAMILIES = ("unet3d", "wan")  # the builtin teachers `teacher train` builds
REWARD_WHICH = {"image": "builtin-image", "video": "builtin-video", "latent": "latent"}  # rewards train --which -> reward


def csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in csv(text))


def reward_arg(text: str) -> dict[str, Any]:
    """``--reward NAME:WEIGHT[:FRAMES]`` -> a reward entry."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--reward takes NAME:WEIGHT[:FRAMES], got {text!r}")
    entry: dict[str, Any] = {"name": parts[0], "weight": float(parts[1])}
    if len(parts) == 3:
        entry["frames"] = int(parts[2])
    return entry


@dataclasses.dataclass
class TrainLoop(StageConfig):
    """What every training loop of a student needs: length, batch, optimiser, data, checkpoints."""

    KIND = "train_loop"

    steps: int = opt(1000, help="optimiser steps")
    batch: int = opt(8, help="clips per step")
    lr: float = opt(1e-4, help="learning rate")
    grad_clip: float = opt(1.0, help="gradient norm clip")
    dataset_clips: int = opt(4096, help="without --data: world clips exported and prepared into the run directory before the loop")
    checkpoint_every: int = opt(100, help="steps between checkpoints (a killed run resumes from the last)")
    log_every: int = opt(10, help="steps between log lines")
    mix_shards: int = opt(1, help="shards each process reads at a time and shuffles together (a shuffle buffer of that many "
                                   "shards; memory grows with it): batches mix clips from several shards")
    read_log: bool = opt(False, help="every process appends the (shard, row) ids of each batch it reads to "
                                     "OUT/read_log/rank<R>.jsonl (to audit that no sample is read twice in an epoch)")
    threads: int = opt(0, help="torch threads (0: torch's default)")
    # Memory for real-size models (docs/decisions.md): bf16 autocast of every network pass (weights, gradients and
    # losses stay fp32), and per-block activation checkpointing of the trained denoiser.
    mixed_precision: str = opt("no", choices=MIXED_PRECISIONS, help="no (fp32) or bf16: network passes under torch.autocast bf16, on CPU too; losses in fp32")
    gradient_checkpointing: bool = opt(False, help="recompute the trained denoiser's block activations in the backward pass (less memory, ~1 more forward)")
    lean_optimizer: bool = opt(False, help="step AdamW one tensor at a time: no temporaries as large as the trained weights (real-size models)")

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "dataset_clips", "checkpoint_every", "log_every", "mix_shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISIONS)}, got {self.mixed_precision!r}")

    def resume_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not its length or logging).

        Gradient checkpointing recomputes the same numbers, so it may change on resume; bf16 is part of the
        identity only when on, so checkpoints written before the field existed still resume."""
        skip = ("steps", "checkpoint_every", "log_every", "read_log", "threads", "gradient_checkpointing", "lean_optimizer")
        out = {k: v for k, v in self.fields_dict().items() if k not in skip}
        for key, default in (("mixed_precision", "no"), ("mix_shards", 1)):
            if out[key] == default:  # off: the identity of checkpoints written before the field existed
                out.pop(key)
        return out


_LOOP_KEYS = tuple(f.name for f in dataclasses.fields(TrainLoop))


@dataclasses.dataclass
class RewardTerm:
    """One reward in the loss: ``- weight * reward(x0 decoded)``, on ``frames`` frames (image) or strided (video)."""

    name: str
    weight: float
    path: str | None = None
    frames: int = 2

    def __post_init__(self) -> None:
        if self.name not in REWARD_NAMES:
            raise ValueError(f"unknown reward {self.name!r}; known rewards: {sorted(REWARD_NAMES)}")
        if not 0.0 <= self.weight <= 100.0:
            raise ValueError(f"reward {self.name!r} weight must be in [0, 100], got {self.weight}")
        if self.frames < 1:
            raise ValueError(f"reward {self.name!r} needs frames >= 1, got {self.frames}")


def reward_terms(entries: list[dict[str, Any]]) -> list[RewardTerm]:
    """A config's ``rewards`` entries, each checked (names, weights, frames; no unknown keys)."""
    terms = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"each reward is an object with name and weight (e.g. {{'name': 'builtin-image', 'weight': 1.0}}), got {entry!r}")
        unknown = set(entry) - {f.name for f in dataclasses.fields(RewardTerm)}
        if unknown:
            raise ValueError(f"unknown reward keys {sorted(unknown)} in {entry}")
        terms.append(RewardTerm(**entry))
    return terms


@dataclasses.dataclass
class DistillConfig(StageConfig):
    KIND = "distill"
    VERSION = 2
    MIGRATIONS = {1: move_into("loop", _LOOP_KEYS)}

    teacher: str = opt("builtin", help="builtin (default) or a diffusers text-to-video directory")
    out: str = opt("runs/student", help="run directory; the student lands in OUT/student")
    seed: int = opt(0)
    # Student.
    mode: str = opt("lora", choices=("lora", "full"), help="lora (T2V-Turbo v1) or full fine-tune (T2V-Turbo v2)")
    lora_rank: int = opt(32)
    w_embedding_dim: int = opt(32, help="the student's guidance-embedding width (timestep_cond)")
    init_student: str = opt("", help="top up this student (distilled earlier from the same teacher) instead of starting from the teacher")
    teacher_weights: str = opt("auto", choices=TEACHER_WEIGHTS, help="shared: the teacher is the LoRA student's base with adapters "
                               "disabled (one copy of the weights); copy: a second UNet; auto: shared wherever that is exact")
    # Consistency distillation.
    origin_steps: int = opt(50, help="the teacher ODE solver's grid (DDIM over this many timesteps)")
    w_min: float = opt(2.0, help="guidance scale range sampled per clip")
    w_max: float = opt(5.0)
    huber_c: float = opt(0.001)
    target_ema: float = opt(0.0, help="0: the online student under no_grad is the target (T2V-Turbo); else an EMA decay")
    timestep_scaling: float = opt(10.0)
    sigma_data: float = opt(0.5)
    # Rewards on the single-step x0.
    rewards: list[dict[str, Any]] = opt(default_factory=list, flag="--reward", parse=reward_arg, append=True,
                                        help="NAME:WEIGHT[:FRAMES], repeatable (e.g. builtin-image:1.0:2)")
    motion_guidance: float = opt(0.0, help="motion guidance strength (T2V-Turbo-v2); 0 disables")
    motion_fraction: float = opt(0.5, help="guide the noisiest fraction of solver steps")
    vsd_weight: float = opt(0.0, help="variational score distillation weight (DOLLAR); 0 disables")
    vsd_lora_rank: int = opt(16)
    vsd_lr: float = opt(1e-4)
    temporal_lr_scale: float = opt(1.0, help="full mode: temporal layers train at this multiple of lr (T2V-Turbo-v2)")
    loop: TrainLoop = dataclasses.field(default_factory=TrainLoop)
    # What the student is sampled with.
    default_steps: int = opt(4)
    default_guidance: float = opt(3.0)
    # Training data: None trains on the synthetic world's first loop.dataset_clips clips, exported as mp4 and prepared
    # into the run directory (world/, data/) exactly as --data would be (core.world_export.world_data).
    data: str | None = opt(None, help="a prepared dataset (`turbo-edge data prepare --model` this run's teacher): train on its latents, text embeddings and captions instead of the synthetic world")

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        if self.mode == "lora" and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 in lora mode, got {self.lora_rank}")
        if not 0 < self.w_min <= self.w_max:
            raise ValueError(f"need 0 < w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        if self.w_embedding_dim < 2 or self.w_embedding_dim % 2:
            raise ValueError(f"w_embedding_dim must be even and >= 2, got {self.w_embedding_dim}")
        if not 0.0 <= self.target_ema < 1.0:
            raise ValueError(f"target_ema must be in [0, 1), got {self.target_ema}")
        if not 0.0 <= self.motion_fraction <= 1.0 or self.motion_guidance < 0:
            raise ValueError("motion_guidance must be >= 0 and motion_fraction in [0, 1]")
        if self.vsd_weight < 0 or self.huber_c <= 0:
            raise ValueError("vsd_weight must be >= 0 and huber_c > 0")
        if self.teacher_weights not in TEACHER_WEIGHTS:
            raise ValueError(f"teacher_weights must be one of {list(TEACHER_WEIGHTS)}, got {self.teacher_weights!r}")
        if self.teacher_weights == "shared" and self.shared_teacher_blocker():
            raise ValueError(f"teacher_weights 'shared' is not exact here: {self.shared_teacher_blocker()}; use teacher_weights auto or copy")
        for name in ("origin_steps", "default_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.reward_terms()  # validates every reward entry

    def shared_teacher_blocker(self) -> str:
        """Why the teacher cannot be the student's base with adapters disabled ("" where it can)."""
        if self.mode != "lora":
            return "a full fine-tune changes the base weights themselves"
        if self.init_student:
            return "a topped-up student's base is its merged weights, not the teacher's"
        if self.motion_guidance > 0:
            return "motion guidance replaces the teacher's temporal attention processors, which the student would share"
        if self.vsd_weight > 0:
            return "VSD's fake score is built as a copy of the teacher's UNet"
        return ""

    def shares_teacher(self) -> bool:
        return self.teacher_weights == "shared" or (self.teacher_weights == "auto" and not self.shared_teacher_blocker())

    def reward_terms(self) -> list[RewardTerm]:
        return reward_terms(self.rewards)

    def training_hash_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not the step count)."""
        d = self.fields_dict()
        d.pop("out")
        d.pop("teacher_weights")  # where the teacher's weights live, not what it computes (bit-exact either way)
        d["loop"] = self.loop.resume_fields()
        d.pop("data")  # the data's identity and read positions are checked from the checkpoint (core.train_data)
        return d


@dataclasses.dataclass
class PruneConfig(StageConfig):
    KIND = "prune"
    VERSION = 2
    MIGRATIONS = {1: move_into("loop", _LOOP_KEYS)}

    student: str = opt("builtin-student", help="builtin-student (default) or a student directory from `turbo-edge distill`")
    out: str = opt("runs/pruned", help="run directory; the pruned student lands in OUT/pruned")
    plan: str | None = opt(None, help="a pruning_plan.json to replay (default: the plan --rule makes)")
    rule: str = opt("vdmini", choices=BLOCK_RULES, help="block plan rule; none: channel pruning only")
    remove_count: int = opt(3, help="units the lowest_cost rule removes (cheapest first in the importance table)")
    channel_ratio: float = opt(0.0, help="after the block plan, prune this fraction of every internal width with torch-pruning "
                                         "(whole norm groups, heads, gated pairs; block output widths never change); a DiT: this "
                                         "fraction of each kept block's attention heads and FFN channels; 0 disables")
    channel_importance: str = opt("magnitude", choices=CHANNEL_IMPORTANCES,
                                  help="magnitude, l1, random; activation (a DiT's measured head / FFN contributions)")
    seed: int = opt(0)
    importance_clips: int = opt(8, help="clips for the importance table written beside the run (0 skips it unless the rule needs it)")
    importance_steps: int = opt(4)
    # Recovery training: the unpruned student teaches the pruned one.
    w_min: float = opt(2.0)
    w_max: float = opt(5.0)
    huber_c: float = opt(0.001)
    icd_weight: float = opt(0.1, help="Individual Content Distillation weight (per-frame feature L2); 0 disables")
    mca_weight: float = opt(1.0, help="Multi-frame Content Adversarial weight (hinge); 0 disables")
    mca_up_block: int = opt(-1, help="which up block's output features the discriminator sees")
    disc_width: int = opt(64)
    disc_lr: float = opt(1e-4)
    # Rewards on the pruned student's single-step x0, as distill's (T2V-Turbo's reward feedback during recovery).
    rewards: list[dict[str, Any]] = opt(default_factory=list, flag="--reward", parse=reward_arg, append=True,
                                        help="NAME:WEIGHT[:FRAMES], repeatable (e.g. builtin-image:1.0:2); none by default")
    init_pruned: str = opt("", help="continue recovery from this pruned model (made by `turbo-edge prune` from the same student): "
                                    "its plans are replayed and its weights are the start, instead of pruning the student anew (its MCA "
                                    "discriminator is not: it starts untrained, so a top-up runs best with mca_weight 0)")
    loop: TrainLoop = dataclasses.field(default_factory=TrainLoop)
    # Recovery data: None trains on the synthetic world prepared into the run directory, as for distill.
    data: str | None = opt(None, help="a prepared dataset (`turbo-edge data prepare --model` this run's student (or its teacher)): train on its latents, text embeddings and captions instead of the synthetic world")

    def __post_init__(self) -> None:
        if self.rule not in BLOCK_RULES:
            raise ValueError(f"unknown pruning rule {self.rule!r}; known rules: {list(BLOCK_RULES)}")
        if not 0 <= self.channel_ratio < 1:
            raise ValueError(f"channel_ratio must be in [0, 1) (0 disables channel pruning), got {self.channel_ratio}")
        if self.channel_importance not in CHANNEL_IMPORTANCES:
            raise ValueError(f"unknown channel importance {self.channel_importance!r}; known: {list(CHANNEL_IMPORTANCES)}")
        if self.rule == "none" and not self.plan and self.channel_ratio == 0:
            raise ValueError("rule 'none' removes no blocks: set channel_ratio > 0 (or give a plan), else nothing is pruned")
        if self.icd_weight < 0 or self.mca_weight < 0:
            raise ValueError(f"icd_weight and mca_weight must be >= 0 (0 disables), got {self.icd_weight}, {self.mca_weight}")
        if not 0 < self.w_min <= self.w_max:
            raise ValueError(f"need 0 < w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        if self.huber_c <= 0 or self.disc_lr <= 0:
            raise ValueError("huber_c and disc_lr must be > 0")
        for name in ("importance_steps", "remove_count", "disc_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init_pruned and (self.plan or self.channel_ratio):
            raise ValueError("init_pruned replays that model's own plans: leave plan unset and channel_ratio 0")
        reward_terms(self.rewards)  # validates every reward entry
        if self.importance_clips < 0 or (self.data is None and self.importance_clips > self.loop.dataset_clips):  # --data: its size, at run time
            raise ValueError(f"importance_clips must be in [0, dataset_clips={self.loop.dataset_clips}], got {self.importance_clips}")

    def training_hash_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not the step count)."""
        d = self.fields_dict()
        for key in ("out", "importance_clips", "importance_steps"):
            d.pop(key)
        d["loop"] = self.loop.resume_fields()
        d.pop("data")  # the data's identity and read positions are checked from the checkpoint (core.train_data)
        if self.channel_ratio == 0:  # off: the hash block-only checkpoints were written with before these fields
            d.pop("channel_ratio"), d.pop("channel_importance")
        for key in ("rewards", "init_pruned"):  # unset: the hash checkpoints were written with before these fields
            if not d[key]:
                d.pop(key)
        return d


@dataclasses.dataclass
class TeacherTrainConfig(StageConfig):
    KIND = "teacher_train"

    out: str = opt("runs/teacher", help="run directory (checkpoints, logs, encoded data)")
    family: str = opt("unet3d", choices=TEACHER_FAMILIES, help="unet3d: the builtin UNet3D teacher (core.models); wan: the builtin "
                                                             "DiT teacher, Wan2.1's architecture at the world's size (core.wan)")
    seed: int = opt(0)
    # Phase 1: autoencoder.
    vae_steps: int = opt(1200)
    vae_batch: int = opt(64)
    vae_lr: float = opt(1e-3)
    vae_kl_weight: float = opt(1e-6)
    vae_object_weight: float = opt(8.0)
    # Phase 2: the denoiser (UNet or transformer) + text encoder; "unet" names the phase for both families.
    dataset_clips: int = opt(16384)
    unet_steps: int = opt(20000, help="denoiser optimiser steps (the UNet's, or the transformer's with --family wan)")
    batch: int = opt(32)
    lr: float = opt(3e-4)
    warmup_steps: int = opt(200)
    min_snr_gamma: float = opt(5.0)
    min_snr_plus_one: bool = opt(False, help="loss weight min(SNR, gamma) + 1 in x0 terms (weights high noise; see spec.param)")
    cond_dropout: float = opt(0.1)
    ema_decay: float = opt(0.999)
    grad_clip: float = opt(1.0)
    checkpoint_every: int = opt(250)
    log_every: int = opt(25)
    threads: int = opt(0, help="torch threads (0: torch's default; 1 keeps a second core free)")
    phases: tuple[str, ...] = opt(("vae", "unet"), parse=csv, help="comma-separated subset of vae,unet")
    init_from: str = opt("", help="warm start from this teacher (alias or directory) of the builtin architecture: its autoencoder "
                                  "replaces the vae phase, its UNet and text encoder initialise the unet phase")
    # False: a freshly initialised (seeded) text encoder stays frozen, as real text-to-video models keep theirs
    # (docs/decisions.md: trained jointly, the tiny encoder kept motion words almost indistinguishable).
    train_text_encoder: bool = opt(True, negative="--freeze-text-encoder",
                                   help="train the text encoder jointly (--freeze-text-encoder keeps a freshly initialised one frozen)")
    # > 0: re-draw the frozen text encoder's token embeddings from N(0, std^2) (docs/decisions.md: at CLIP's own init
    # the last word of a prompt, the direction, stays nearly identical across prompts).
    text_token_std: float = opt(0.0, help="re-draw the frozen text encoder's token embeddings with this std (1.0 keeps every word distinct)")
    # > 0: this fraction of each batch draws its timestep from [high_noise_min_t, T), where a clip's direction of
    # travel is decided at the tiny teacher's 8x8 latents (docs/decisions.md); the noise schedule is unchanged.
    high_noise_fraction: float = opt(0.0, help="fraction of each batch whose timestep is drawn from [--high-noise-min-t, 1000)")
    high_noise_min_t: int = opt(850, help="lower end of the high-noise timestep range")

    def __post_init__(self) -> None:
        for name in ("vae_steps", "unet_steps", "batch", "vae_batch", "dataset_clips", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not self.phases or set(self.phases) - {"vae", "unet"}:
            raise ValueError(f"phases must be a non-empty subset of ('vae', 'unet'), got {self.phases}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.text_token_std < 0 or (self.text_token_std > 0 and self.train_text_encoder):
            raise ValueError(f"text_token_std must be >= 0 and applies only to a frozen text encoder (--freeze-text-encoder), got {self.text_token_std}")
        if not 0.0 <= self.high_noise_fraction <= 1.0:
            raise ValueError(f"high_noise_fraction must be in [0, 1], got {self.high_noise_fraction}")
        if not 0 <= self.high_noise_min_t < 1000:
            raise ValueError(f"high_noise_min_t must be a training timestep in [0, 1000), got {self.high_noise_min_t}")
        if self.family not in TEACHER_FAMILIES:
            raise ValueError(f"family must be one of {list(TEACHER_FAMILIES)}, got {self.family!r}")
        if self.family == "wan" and (self.init_from or self.train_text_encoder):
            raise ValueError("--family wan trains from scratch with a frozen text encoder: pass --freeze-text-encoder and no --init-from")
        if self.init_from and "vae" in self.phases:
            raise ValueError("init_from supplies the autoencoder: run only the unet phase (--phases unet)")


@dataclasses.dataclass
class TeacherExportConfig(StageConfig):
    KIND = "teacher_export"

    run: str = opt("runs/teacher", help="teacher run directory")
    out: str = opt("turbo_edge/assets/teacher", help="output diffusers directory")
    overwrite: bool = opt(False, help="replace an existing output of the same kind turbo-edge wrote (kept until the new one is complete)")
    ema: bool = opt(True, negative="--online", help="export the EMA weights (--online: the online weights)")


@dataclasses.dataclass
class ProbeConfig(StageConfig):
    KIND = "teacher_probe"

    model: str = opt("builtin", help="teacher: builtin or a model directory of the world's geometry")
    timesteps: tuple[int, ...] = opt((500, 700, 850, 925, 975), parse=csv_ints, help="comma-separated, e.g. 700,850,950")
    num: int = opt(32, help="moving validation clips")
    seed: int = opt(0)
    batch: int = opt(16)
    threads: int = opt(0)
    json: str | None = opt(None, help="write the result here")

    def __post_init__(self) -> None:
        if self.num <= 0 or self.batch <= 0:
            raise ValueError(f"num and batch must be positive, got num={self.num} batch={self.batch}")
        if not self.timesteps:
            raise ValueError("give at least one timestep, e.g. --timesteps 850,925,975")


@dataclasses.dataclass
class RewardTrainConfig(StageConfig):
    KIND = "reward_train"

    which: str = opt("image", choices=tuple(REWARD_WHICH), help="which reward to train")
    out: str = opt("", help="default: turbo_edge/assets/rewards/<reward name>")
    steps: int = opt(1000)
    batch: int = opt(48)
    lr: float = opt(2e-3)
    seed: int = opt(0)
    threads: int = opt(1, help="torch threads (0: torch's default)")
    pool_clips: int = opt(3456, help="rendered train samples the batches are drawn from")
    eval_clips: int = opt(256)
    width: int = opt(16)
    embed_dim: int = opt(64)
    # Latent reward only: the teacher whose VAE defines the latent space, and what to predict.
    teacher: str = opt("", help="latent reward: the teacher whose VAE defines the latents")
    target: str = opt("builtin-video", help="latent reward: what it predicts (builtin-video, motion, ...)")
    samples: int = opt(2048, help="latent reward: encoded training samples")
    # Share of samples that are the teacher's one-step x0 from a noised clip: the distribution a student's x0 is
    # in. 0 fits clean clips only (the reward was then exploited: docs/decisions.md).
    x0_fraction: float = opt(0.3, help="latent reward: share of samples that are the teacher's one-step x0 from a noised clip (0 disables)")
    data: str | None = opt(None, help="latent reward: a prepared dataset (`turbo-edge data prepare --model` the --teacher) whose latents "
                                      "and captions replace the world's (the image and video rewards need the world's pixels and labels)")

    def __post_init__(self) -> None:
        if self.which not in REWARD_WHICH:
            raise ValueError(f"which must be one of {list(REWARD_WHICH)}, got {self.which!r}")
        for key in ("steps", "batch", "pool_clips", "eval_clips", "width", "embed_dim", "samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch < 4 or self.batch % 2:
            raise ValueError(f"batch must be even and >= 4 (clips come in hard-negative pairs), got {self.batch}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8 (its layers use group norms of 8 groups), got {self.width}")
        if not 0.0 <= self.x0_fraction <= 1.0:
            raise ValueError(f"x0_fraction must be in [0, 1], got {self.x0_fraction}")
        if self.which == "latent" and not self.teacher:
            raise ValueError("the latent reward needs --teacher DIR: its latent space is that teacher's VAE's")
        if self.data and self.which != "latent":
            raise ValueError(f"--data: the {self.reward_name} reward trains on the world's rendered pixels and its colour / shape / motion "
                             "labels, which a prepared dataset (latents + captions) lacks; train it without --data")

    @property
    def reward_name(self) -> str:
        return REWARD_WHICH[self.which]


@dataclasses.dataclass
class EvaluatorTrainConfig(StageConfig):
    KIND = "evaluator_train"

    steps: int = opt(1200)
    batch: int = opt(32)
    seed: int = opt(0)
    out: str | None = opt(None, help="default: the package's assets/evaluator")


@dataclasses.dataclass
class DecoderLoop(TrainLoop):
    """The shared training loop with a tiny decoder's defaults: trained from scratch, so a larger learning rate."""

    KIND = "decoder_loop"

    steps: int = opt(2000, help="optimiser steps")
    lr: float = opt(5e-4, help="learning rate")


DECODER_LR_SCHEDULES = ("constant", "cosine")
DECODER_KINDS = ("tiny", "pruned")  # a TinyDecoder distilled from scratch; the full decoder pruned (VDMini) and fine-tuned


@dataclasses.dataclass
class DecoderTrainConfig(StageConfig):
    """``decoder train``: a tiny decoder distilled against the model's own full decoder on its latents (decoder-only;
    the encoder and the latent space stay as they are)."""

    KIND = "decoder_train"

    model: str = opt("builtin-student", help="the model whose decoder to distil: an alias or a model directory (teacher, student or pruned)")
    out: str = opt("runs/decoder", help="run directory; the model with its tiny decoder added lands in OUT/model")
    data: str | None = opt(None, help="a prepared dataset (`turbo-edge data prepare --model` this model): its latents are the training "
                                      "inputs (default: the synthetic world's clips, prepared into the run directory)")
    seed: int = opt(0)
    variant: str = opt("tiny", choices=DECODER_KINDS, help="which decoder to make (its name in the model card): tiny (a new small decoder) "
                                                           "or pruned (the full decoder with layers removed and widths narrowed, fine-tuned)")
    # The tiny decoder (core.tiny_decoder.TinyDecoder).
    width: int = opt(64, help="channels at the latents' size, halved at each larger level down to 16 (unless --channels)")
    channels: tuple[int, ...] = opt((), parse=csv_ints, help="comma-separated widths, one per resolution level from the latents' size up "
                                                               "(the autoencoder's len(block_out_channels)); default: from --width")
    blocks: int = opt(1, help="memory blocks per resolution level")
    memory: bool = opt(True, help="memory blocks see the previous frame's features (--no-memory: a purely per-frame decoder)")
    # The pruned variant (VDMini for the decoder): which units go, measured or named, and the channel ratio.
    plan: str | None = opt(None, help="pruned: a decoder_plan.json (from an earlier run) to replay instead of making one")
    remove: tuple[str, ...] = opt((), parse=csv, help="pruned: comma-separated units to remove (default: the --remove-count least "
                                                     "important by measured frame MSE)")
    remove_count: int = opt(3, help="pruned: units removed by measured importance (mid-block resnets / attention, up-block resnets)")
    channel_ratio: float = opt(0.0, help="pruned: then remove this fraction of every remaining resnet's internal width, smallest conv1 "
                                         "filter norms first (AutoencoderKL: whole norm groups, torch-pruning; Wan: channels in 8s); 0 disables")
    importance_clips: int = opt(8, help="pruned: clips of the training data the importance table is measured on")
    # Losses against the full decoder's frames.
    l1_weight: float = opt(1.0, help="L1 to the full decoder's frames")
    mse_weight: float = opt(1.0, help="MSE to the full decoder's frames")
    perceptual_weight: float = opt(0.1, help="LPIPS-style distance of the model's own frozen VAE encoder features (never the held-out evaluator); 0 disables")
    adv_weight: float = opt(0.0, help="hinge adversarial weight of a per-frame patch discriminator (full decoder's frames real); 0 disables")
    adv_start: int = opt(0, help="step from which the adversarial term and the discriminator train")
    disc_width: int = opt(32)
    disc_lr: float = opt(1e-4)
    frame_balance: float = opt(0.0, help="weigh each frame position's L1 / MSE by its share of the batch's error to this power (0: "
                                         "every frame alike; 1: in proportion), so the frames the decoder gets worst (a causal "
                                         "decoder's last one) weigh most")
    lr_schedule: str = opt("constant", choices=DECODER_LR_SCHEDULES, help="constant, or cosine: the learning rates decay to 0 over --steps")
    init: str | None = opt(None, help="tiny: start from this model directory's tiny decoder (a finished run's OUT/model, made for "
                                      "this model's autoencoder, of the same architecture) instead of a random one")
    loop: DecoderLoop = dataclasses.field(default_factory=DecoderLoop)
    # Held-out quality at the end: PSNR / SSIM of the tiny decoder's frames against the full decoder's.
    val_data: str | None = opt(None, help="a prepared dataset held out from training: PSNR / SSIM against the full decoder on its latents "
                                          "(default without --data: the world's val split, --val-clips clips)")
    val_clips: int = opt(32, help="held-out clips scored at the end (0 skips it)")

    def __post_init__(self) -> None:
        if self.variant not in DECODER_KINDS:
            raise ValueError(f"variant must be one of {list(DECODER_KINDS)}, got {self.variant!r}")
        for name in ("width", "blocks", "disc_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must all be >= 1, got {list(self.channels)}")
        for name in ("l1_weight", "mse_weight", "perceptual_weight", "adv_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")
        if self.l1_weight == self.mse_weight == self.perceptual_weight == 0:
            raise ValueError("l1_weight, mse_weight and perceptual_weight are all 0: nothing ties the decoder to the full one")
        if self.adv_start < 0 or self.val_clips < 0 or self.disc_lr <= 0:
            raise ValueError("adv_start and val_clips must be >= 0 and disc_lr > 0")
        if not 0 <= self.channel_ratio < 1 or self.remove_count < 0 or self.importance_clips < 1:
            raise ValueError("channel_ratio must be in [0, 1), remove_count >= 0 and importance_clips >= 1")
        if self.variant == "tiny" and (self.plan or self.remove or self.channel_ratio):
            raise ValueError("plan, remove and channel_ratio prune the full decoder: they need --variant pruned")
        if not 0 <= self.frame_balance <= 2:
            raise ValueError(f"frame_balance must be in [0, 2] (0: every frame alike), got {self.frame_balance}")
        if self.lr_schedule not in DECODER_LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(DECODER_LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.init is not None and (self.variant != "tiny" or not str(self.init).strip()):
            raise ValueError("init starts from a model directory's tiny decoder: it needs --variant tiny and a directory")

    def training_hash_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not the step count or the evaluation)."""
        d = self.fields_dict()
        for key in ("out", "data", "val_data", "val_clips"):  # data: its identity and positions are checked from the checkpoint
            d.pop(key)
        for key, default in (("frame_balance", 0.0), ("lr_schedule", "constant"), ("init", None)):
            if d[key] == default:  # off: the identity of checkpoints written before the field existed
                d.pop(key)
        d["loop"] = self.loop.resume_fields()
        if self.lr_schedule != "constant":  # the schedule spans the run: a resume with another length is another run
            d["loop"]["steps"] = self.loop.steps
        return d


@dataclasses.dataclass
class DecoderSamplesConfig(StageConfig):
    """``decoder samples``: a prepared dataset of a consistency student's own final latents, the inputs its decoder
    sees at deployment, for ``decoder train --data`` (the full decoder's frames of them are the target)."""

    KIND = "decoder_samples"

    model: str = opt("builtin-student", help="a consistency student (alias or model directory): whose samples, and whose autoencoder decodes them")
    out: str = opt("", help="the dataset directory (shard-NNNNN.safetensors + index.json); a killed run resumes in it")
    captions: str | None = opt(None, help="a prepared dataset whose captions are the prompts, in its order (default: the synthetic "
                                          "world's training prompts)")
    clips: int = opt(1024, help="samples to write; the prompts are cycled, each pass with new noise")
    steps: int = opt(4, help="sampling steps (one the student supports)")
    guidance: float | None = opt(None, help="guidance scale (default: the student's own)")
    seed: int = opt(0, help="noise seed: clip i draws the runtime's noise stream i")
    shard_size: int = opt(256, help="clips per shard")
    batch: int = opt(8, help="prompts per sampling batch")
    dtype: str = opt("float16", choices=LATENT_DTYPES, help="storage dtype of latents and text embeddings")
    threads: int = opt(0, help="torch threads (0: torch's default)")
    overwrite: bool = opt(False, help="start over when --out holds a dataset made with other arguments or another model")

    def __post_init__(self) -> None:
        if not str(self.out).strip():
            raise ValueError("give --out: the directory the samples are written to")
        if self.captions is not None and not str(self.captions).strip():
            raise ValueError("--captions is empty: give a prepared dataset, or leave it out for the world's prompts")
        if self.clips < 1 or self.steps < 1 or self.batch < 1 or not 1 <= self.shard_size <= MAX_SHARD_SIZE:
            raise ValueError(f"clips, steps and batch must be >= 1 and shard_size in [1, {MAX_SHARD_SIZE}], got {self.clips}, "
                             f"{self.steps}, {self.batch} and {self.shard_size}")
        if self.guidance is not None and not (self.guidance >= 0 and self.guidance < 1e3):
            raise ValueError(f"guidance must be in [0, 1000), got {self.guidance}")
        if self.dtype not in LATENT_DTYPES:
            raise ValueError(f"dtype must be one of {list(LATENT_DTYPES)}, got {self.dtype!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
