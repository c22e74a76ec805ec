"""Train the builtin rewards on the synthetic world's ``train`` split, measure them on ``val`` / ``heldout``.

``turbo-edge rewards train --which image|video|latent --steps N [--dry-run]`` runs ``run_training``.

Objective (both builtin rewards): InfoNCE with a learnable temperature, clip -> every training prompt plus
prompt -> every clip in the batch, with all matching pairs as positives (a frame matches every prompt of its
colour and shape; a clip only its own prompt). Video batches pair each clip with a clip of the same colour and
shape but another motion (hard negatives), and use 2, 4 or 8 evenly strided frames so the reward serves any
frame count. Clips come from a pool of ``train`` samples rendered once, augmented on the fly (noise, blur,
gain; time reversal for video, which swaps the motion's direction).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from turbo_edge.core import world
from turbo_edge.core.data import to_pixels
from turbo_edge.core.pipeline_io import load_teacher, resolve_model_path
from turbo_edge.core.rewards.base import ASSET_DIR, RewardConfig, save_reward
from turbo_edge.core.rewards.builtin import ImageTextReward, VideoTextReward, _DualEncoder
from turbo_edge.core.rewards.latent import teacher_x0_denoiser, train_latent_reward
from turbo_edge.core.train_data import load_checked
from turbo_edge.spec.configs import RewardTrainConfig

log = logging.getLogger(__name__)
REVERSED_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}
VIDEO_FRAME_COUNTS = ((2, 0.25), (4, 0.25), (8, 0.5))


# ---------------------------------------------------------------- data


class TrainPool:
    """``train`` samples rendered once and bucketed by their attribute triple."""

    def __init__(self, num: int, seed: int) -> None:
        attrs, clips = world.batch("train", seed, range(num))
        self.clips = clips
        self.combos = world.combinations("train")
        self.prompts = [a.prompt for a in self.combos]
        index = {a: i for i, a in enumerate(self.combos)}
        self.combo_of = np.array([index[a] for a in attrs])
        self.by_combo = [np.flatnonzero(self.combo_of == i) for i in range(len(self.combos))]
        missing = [self.prompts[i] for i, b in enumerate(self.by_combo) if len(b) == 0]
        if missing:
            raise ValueError(f"pool of {num} clips misses {len(missing)} training prompts (e.g. {missing[0]!r}); raise pool_clips")
        self.index = index
        content = [(a.colour, a.shape) for a in self.combos]
        self.same_content = np.array([[c == d for d in content] for c in content])  # a frame cannot show motion
        self.same_prompt = np.eye(len(self.combos), dtype=bool)

    def pick(self, combo: int, rng: np.random.Generator) -> int:
        members = self.by_combo[combo]
        return int(members[rng.integers(len(members))])

    def partner(self, combo: int, rng: np.random.Generator) -> int:
        """A training combo with the same colour and shape and another motion."""
        a = self.combos[combo]
        others = [self.index[b] for b in self.combos if (b.colour, b.shape) == (a.colour, a.shape) and b.motion != a.motion]
        return int(others[rng.integers(len(others))])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Corruptions a student's decoded frames show: noise, blur, gain. x [B, T, 3, H, W] in [-1, 1]."""
    b = x.shape[0]
    x = x + torch.rand(b, 1, 1, 1, 1, generator=gen) * 0.2 * torch.randn(x.shape, generator=gen)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        sel = x[blur]
        x[blur] = F.conv2d(sel.flatten(0, 1), kernel, padding=1, groups=3).reshape(sel.shape)
    gain = 1 + (torch.rand(b, 1, 1, 1, 1, generator=gen) - 0.5) * 0.4
    return (x * gain).clamp(-1.5, 1.5)


def image_batch(pool: TrainPool, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """``batch`` single frames [B, 1, 3, H, W] (two from each of B/2 clips) and their combo ids."""
    clips = rng.integers(len(pool.clips), size=batch // 2)
    f = pool.clips.shape[1]
    frames = np.stack([rng.choice(f, size=2, replace=False) for _ in clips])
    x = pool.clips[clips[:, None], frames].reshape(batch, 1, *pool.clips.shape[2:])
    return to_pixels(x), np.repeat(pool.combo_of[clips], 2)


def video_batch(pool: TrainPool, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """B/2 (clip, same colour+shape other motion) pairs, possibly time-reversed, on 2, 4 or 8 strided frames."""
    anchors = rng.integers(len(pool.combos), size=batch // 2)
    combos = np.stack([anchors, [pool.partner(int(c), rng) for c in anchors]], axis=1).reshape(-1)
    clips = pool.clips[[pool.pick(int(c), rng) for c in combos]]
    for i, c in enumerate(combos):
        a = pool.combos[c]
        flipped = world.Attributes(a.colour, a.shape, REVERSED_MOTION[a.motion])
        if a.motion != "still" and flipped in pool.index and rng.random() < 0.5:
            clips[i], combos[i] = clips[i, ::-1], pool.index[flipped]
    counts, probs = zip(*VIDEO_FRAME_COUNTS)
    k = min(int(rng.choice(counts, p=probs)), clips.shape[1])
    idx = np.linspace(0, clips.shape[1] - 1, k).round().astype(int)
    return to_pixels(clips[:, idx]), combos


def contrastive_loss(model: _DualEncoder, x: torch.Tensor, combos: np.ndarray, pool: TrainPool, image: bool) -> torch.Tensor:
    """Multi-positive InfoNCE both ways: visual -> all training prompts, prompt -> visuals in the batch."""
    text = model.embed_text(pool.prompts)  # [P, D]
    vis = model.embed_visual(x)
    vis = vis[:, 0] if image else vis  # image batches hold one frame per item
    scale = model.log_temperature.clamp(max=4.6).exp()
    logits = scale * vis @ text.T  # [B, P]
    match = pool.same_content if image else pool.same_prompt
    same = torch.from_numpy(match[combos])  # [B, P]
    pos = same.float()
    loss_v2t = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    in_batch = pos[:, combos].T  # [B(text), B(visual)]: text of item j vs visual of item i
    logits_t2v = scale * text[combos] @ vis.T
    loss_t2v = -(in_batch / in_batch.sum(1, keepdim=True) * logits_t2v.log_softmax(1)).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_reward(model: _DualEncoder, split: str = "val", clips: int = 256, seed: int = 12345) -> dict[str, float]:
    """Prompt retrieval on ``split`` clips against every prompt of the split's triples (all 120 for heldout).

    Image reward: ``content_top1`` = the best prompt names the right colour and shape (motion is invisible in
    a frame). Video reward: ``top1`` = the best prompt is exactly right; ``motion_acc`` (and ``motion_acc_2f`` on
    2 strided frames) = among prompts of the right colour and shape, the best names the right motion.
    Both: ``pair_acc`` = the matching prompt outscores a random prompt of another colour or shape.
    """
    combos = world.all_combinations() if split == "heldout" else world.combinations(split)
    prompts = [a.prompt for a in combos]
    attrs, raw = world.batch(split, seed, range(clips))
    x = to_pixels(raw)
    text = model.embed_text(prompts)
    truth = np.array([combos.index(a) for a in attrs])
    rng = np.random.default_rng(seed)
    other = np.array([rng.choice([j for j, b in enumerate(combos) if (b.colour, b.shape) != (a.colour, a.shape)]) for a in attrs])
    out: dict[str, float] = {"clips": clips}

    def scores(v: torch.Tensor) -> np.ndarray:
        return ((v @ text.T).mean(1) if v.ndim == 3 else v @ text.T).numpy()  # [N, P]

    def motion_acc(s: np.ndarray) -> float:
        hits = []
        for row, a in zip(s, attrs):
            same = [j for j, b in enumerate(combos) if (b.colour, b.shape) == (a.colour, a.shape)]
            hits.append(combos[same[int(np.argmax(row[same]))]].motion == a.motion)
        return float(np.mean(hits))

    s = np.concatenate([scores(model.embed_visual(x[i : i + 64])) for i in range(0, clips, 64)])
    best = [combos[j] for j in s.argmax(1)]
    out["pair_acc"] = float((s[np.arange(clips), truth] > s[np.arange(clips), other]).mean())
    out["content_top1"] = float(np.mean([(b.colour, b.shape) == (a.colour, a.shape) for a, b in zip(attrs, best)]))
    if model.kind == "video":
        out["top1"] = float(np.mean([a == b for a, b in zip(attrs, best)]))
        out["motion_acc"] = motion_acc(s)
        two = x[:, [0, x.shape[1] - 1]]
        out["motion_acc_2f"] = motion_acc(np.concatenate([scores(model.embed_visual(two[i : i + 64])) for i in range(0, clips, 64)]))
    return out


# ---------------------------------------------------------------- training


def train_builtin(cfg: RewardTrainConfig, progress: bool = True) -> tuple[_DualEncoder, dict[str, Any]]:
    """Train ``builtin-image`` or ``builtin-video`` for ``cfg.steps``; returns the frozen model and metrics."""
    if cfg.which not in ("image", "video"):
        raise ValueError(f"train_builtin trains image or video rewards, not {cfg.which!r}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    image = cfg.which == "image"
    model_cfg = RewardConfig(name=cfg.reward_name, width=cfg.width, embed_dim=cfg.embed_dim)
    model = (ImageTextReward if image else VideoTextReward)(model_cfg)
    start = time.time()
    pool = TrainPool(cfg.pool_clips, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.steps), desc=cfg.reward_name, disable=not progress, dynamic_ncols=True)
    losses = []
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step, 11])
        x, combos = (image_batch if image else video_batch)(pool, cfg.batch, rng)
        loss = contrastive_loss(model, augment(x, gen), combos, pool, image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", T=f"{model.log_temperature.exp().item():.1f}", refresh=False)
    model.freeze()
    metrics = {
        "reward": cfg.reward_name,
        "train_seconds": round(time.time() - start, 1),
        "final_loss": float(np.mean(losses[-20:])),
        "val": evaluate_reward(model, "val", cfg.eval_clips),
        "heldout": evaluate_reward(model, "heldout", cfg.eval_clips),
        "train_config": cfg.to_dict(),
    }
    return model, metrics


def train_latent(cfg: RewardTrainConfig, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fit the latent reward to ``cfg.target`` in the latent space of ``cfg.teacher``'s autoencoder (either family's:
    the world is rendered with the teacher card's lead-in frames, which a causal autoencoder needs)."""
    from turbo_edge.core import world
    from turbo_edge.core.pipeline_io import model_family
    from turbo_edge.spec.card import read_card

    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    data = load_checked(cfg.data, cfg.teacher) if cfg.data else None  # made for this teacher's VAE, or refused now
    vae_dir = resolve_model_path(cfg.teacher) / "vae"  # aliases (builtin) or a directory
    if not vae_dir.is_dir():
        raise FileNotFoundError(f"{cfg.teacher} has no vae/ folder: the latent reward needs a diffusers teacher directory")
    # float32 whatever the checkpoint stores (the shipped teacher keeps float16 weights)
    autoencoder = model_family(cfg.teacher).autoencoder
    vae = autoencoder.load(vae_dir, torch.float32).eval()
    # The teacher card's lead-in, else what the autoencoder's geometry needs before the world's clip.
    card_lead_in = read_card(resolve_model_path(cfg.teacher)).lead_in_frames
    world_cfg = world.WorldConfig(lead_in=card_lead_in or autoencoder.geometry(vae).lead_in_for(world.WorldConfig().frames))
    denoiser = None
    if cfg.x0_fraction > 0:

        denoiser = teacher_x0_denoiser(load_teacher(cfg.teacher))
    start = time.time()
    model, history = train_latent_reward(
        vae, cfg.target, steps=cfg.steps, batch=cfg.batch, num_samples=cfg.samples, lr=cfg.lr, seed=cfg.seed,
        cfg=RewardConfig(name="latent", width=cfg.width), progress=progress, denoiser=denoiser, x0_fraction=cfg.x0_fraction, data=data,
        world_cfg=world_cfg, autoencoder=autoencoder,
    )
    losses = history.pop("loss")
    metrics = {"reward": "latent", "train_seconds": round(time.time() - start, 1), "final_loss": float(np.mean(losses[-20:])),
               **history, "teacher": str(cfg.teacher), "train_config": cfg.to_dict()}
    return model, metrics


def out_dir(cfg: RewardTrainConfig) -> Path:
    """Where the reward is written: ``cfg.out``, else the package's assets (the builtin rewards' home)."""
    return Path(cfg.out) if cfg.out else ASSET_DIR / cfg.reward_name


def run_training(cfg: RewardTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train one reward, write ``model.safetensors`` + ``config.json`` + ``metrics.json`` to ``out_dir(cfg)``."""
    model, metrics = (train_latent if cfg.which == "latent" else train_builtin)(cfg, progress)
    metrics["command"] = " ".join([Path(sys.executable).name, *sys.argv]) if sys.argv and sys.argv[0] else ""
    save_reward(model, model.cfg, out_dir(cfg), metrics)
    log.info("wrote %s reward to %s", cfg.reward_name, out_dir(cfg))
    return metrics
