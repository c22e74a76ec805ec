"""DOLLAR's latent reward model: predict a (possibly non-differentiable) reward straight from latents.

``train_latent_reward`` encodes world ``train`` clips with the teacher's VAE, makes variants whose reward
differs (mismatched prompt, time-reversed motion, noised latents), decodes each variant, scores the decoded
frames with the target (any reward model, or the hand-written :func:`motion_direction_score`), and regresses
the normalised target with a small 3D-conv network. The distiller then uses the model on the student's x0
latents directly: no VAE decode, and a gradient even when the target has none.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from turbo_edge.core import world
from turbo_edge.core.autoencoders import AUTOENCODERS, Autoencoder
from turbo_edge.core.prepared import PreparedData
from turbo_edge.core.rewards.base import RewardConfig, RewardModel, WorldTextEncoder
from turbo_edge.core.rewards.builtin import soft_argmax, time_slope
from turbo_edge.core.rewards.registry import REWARDS, load_reward
from turbo_edge.core.sampling import encode_text
from turbo_edge.spec import param

log = logging.getLogger(__name__)
_WORLD = world.WorldConfig()
TargetFn = Callable[[torch.Tensor, list[str]], torch.Tensor]


def _conv3d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU())


class LatentReward(RewardModel):
    """3D convs over coordinate-augmented latents, FiLM-conditioned on the prompt, with soft-argmax keypoints
    whose slope over time carries motion; predicts the target in its own units (de-normalised)."""

    kind = "latent"

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, k = cfg.width, cfg.keypoints
        self.text = WorldTextEncoder(cfg.words, cfg.text_dim, cfg.text_dim, cfg.text_layers, cfg.max_length)
        # No normalisation on the first layer, and the latents' channel means go to the head: group norms alone
        # would discard absolute latent values, which carry colour and brightness.
        self.stem = nn.Sequential(nn.Conv3d(cfg.latent_channels + 2, w, 3, 1, 1), nn.SiLU(), _conv3d(w, 2 * w))
        self.film = nn.Linear(cfg.text_dim, 4 * w)
        self.body = _conv3d(2 * w, 2 * w)
        self.heatmaps = nn.Conv3d(2 * w, k, 1)
        self.head = nn.Sequential(nn.Linear(2 * w + 2 * k + cfg.text_dim + cfg.latent_channels, 2 * w), nn.SiLU(), nn.Linear(2 * w, 1))

    def forward(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.check_input(x, prompts)
        if x.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"latent reward was trained on {self.cfg.latent_channels}-channel latents, got {x.shape[1]}")
        b, _, f, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype), indexing="ij")
        coords = torch.stack([xs, ys]).to(x.device)[None, :, None].expand(b, 2, f, h, w)
        text = self.text(prompts)
        scale, shift = self.film(text)[:, :, None, None, None].chunk(2, dim=1)
        feat = self.body(self.stem(torch.cat([x, coords], dim=1)) * (1 + scale) + shift)
        heat = self.heatmaps(feat)  # [B, K, F, h, w]
        points = soft_argmax(heat.transpose(1, 2).flatten(0, 1)).reshape(b, f, -1)  # [B, F, 2K]
        pred = self.head(torch.cat([feat.mean((2, 3, 4)), time_slope(points), text, x.mean((2, 3, 4))], dim=1)).squeeze(1)
        return pred * self.cfg.target_std + self.cfg.target_mean


@torch.no_grad()
def motion_direction_score(frames: torch.Tensor, prompts: list[str], threshold: float = 0.2) -> torch.Tensor:
    """A non-differentiable reward: track the object's centroid, compare its travel with the prompt's motion.

    The background is each frame's border median; object pixels differ from it by more than ``threshold``
    (in [-1, 1] units). The travel is the centroid's least-squares slope over the clip. A moving prompt
    scores the travel along its direction over half the world's smallest travel (clipped to [-1, 1]); "still"
    scores 1 minus twice the travel over that scale. A frame with no object pixels contributes no centroid;
    a clip with fewer than two such frames scores -1.
    """
    x = frames.detach().float()
    b, f, _, h, w = x.shape
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # [B, F, 3, 2(H+W)]
    diff = (x - border.median(-1).values[..., None, None]).abs().amax(2)  # [B, F, H, W]
    weight = (diff > threshold).float()
    mass = weight.sum((2, 3))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    centre = torch.stack([(weight * xs).sum((2, 3)), (weight * ys).sum((2, 3))], dim=-1) / mass.clamp_min(1)[..., None]
    scale = 0.5 * _WORLD.travel_range[0] * w / _WORLD.size
    scores = []
    for i, prompt in enumerate(prompts):
        seen = mass[i] > 0
        if seen.sum() < 2:
            scores.append(-1.0)
            continue
        t = torch.arange(f, dtype=x.dtype)[seen] / max(f - 1, 1)
        c = centre[i][seen]
        tc = t - t.mean()
        travel = (tc[:, None] * (c - c.mean(0))).sum(0) / (tc * tc).sum().clamp_min(1e-6)  # pixels per clip
        motion = world.parse_prompt(prompt).motion
        if motion == "still":
            scores.append(1.0 - 2.0 * min(1.0, float(travel.norm()) / scale))
        else:
            direction = torch.tensor(world.MOTION_VECTORS[motion], dtype=x.dtype)
            scores.append(max(-1.0, min(1.0, float((travel * direction).sum()) / scale)))
    return torch.tensor(scores)


TARGETS: dict[str, TargetFn] = {"motion": motion_direction_score}


def resolve_target(target: str | TargetFn) -> tuple[str, TargetFn]:
    """A target name ("motion", or any reward in the registry except "latent") or a callable."""
    if callable(target):
        return getattr(target, "__name__", "custom"), target
    if target in TARGETS:
        return target, TARGETS[target]

    if target == "latent" or target not in REWARDS:
        valid = sorted(TARGETS) + sorted(n for n in REWARDS if n != "latent")
        raise ValueError(f"unknown latent-reward target {target!r}; valid targets: {valid}")
    model = load_reward(target)
    return target, lambda frames, prompts: model(frames, prompts).detach()


Denoiser = Callable[[torch.Tensor, list[str], np.random.Generator], torch.Tensor]
# (first, count) -> clean latents [count, C, F, h, w] (VAE mean * scaling factor) and their prompts.
LatentClips = Callable[[int, int], tuple[torch.Tensor, list[str]]]


def world_clips(vae, seed: int, world_cfg: world.WorldConfig | None = None, autoencoder: Autoencoder | None = None) -> LatentClips:
    """World ``train`` clips ``first ..`` encoded with ``vae`` through its family's plug point (``autoencoder``; the
    per-frame ``AutoencoderKL`` when not given); ``world_cfg.lead_in`` renders the frames a causal autoencoder needs."""
    codec = autoencoder or AUTOENCODERS["AutoencoderKL"]

    def clips(first: int, count: int) -> tuple[torch.Tensor, list[str]]:
        attrs, raw = world.batch("train", seed, range(first, first + count), world_cfg or world.WorldConfig())
        return codec.encode(vae, raw).transpose(1, 2), [a.prompt for a in attrs]

    return clips


def prepared_clips(data: PreparedData) -> tuple[LatentClips, list[str]]:
    """A prepared dataset's clips in index order (already encoded: no VAE pass) and its distinct captions. Its captions
    must be world prompts: the reward's text encoder knows only the world's words, and the targets read the motion."""
    captions = [c for k in range(len(data.shards)) for c in data.load_shard(k).captions]
    for caption in dict.fromkeys(captions):
        try:
            world.parse_prompt(caption)
        except (KeyError, ValueError):
            raise ValueError(f"--data {data.path} has captions that are not world prompts (e.g. {caption!r}): the latent reward's text "
                             "encoder and targets know only the world's colour / shape / motion words; train it without --data") from None
    sizes = np.cumsum([0] + [int(s["samples"]) for s in data.shards])

    def clips(first: int, count: int) -> tuple[torch.Tensor, list[str]]:
        lat, text = [], []
        for k in range(int(np.searchsorted(sizes, first, side="right")) - 1, len(data.shards)):
            lo, hi = max(first, int(sizes[k])), min(first + count, int(sizes[k + 1]))
            if lo >= hi:
                break
            shard = data.load_shard(k)
            lat.append(shard.latents[lo - int(sizes[k]) : hi - int(sizes[k])])
            text.extend(shard.captions[lo - int(sizes[k]) : hi - int(sizes[k])])
        return torch.cat(lat).float().transpose(1, 2).contiguous(), text

    return clips, list(dict.fromkeys(captions))


@torch.no_grad()
def build_latent_dataset(
    vae, target_fn: TargetFn, num: int, seed: int, world_cfg: world.WorldConfig | None = None, chunk: int = 32,
    denoiser: Denoiser | None = None, x0_fraction: float = 0.0, clips: LatentClips | None = None, prompt_pool: list[str] | None = None,
    autoencoder: Autoencoder | None = None,
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """``num`` (latents [C, F, h, w], prompt, target) triples from ``train`` clips (or ``clips``, e.g.
    :func:`prepared_clips`, with ``prompt_pool`` its captions) and their variants:
    40% as is, 20% with another training prompt, 20% time-reversed, 20% with noised latents; with a
    ``denoiser``, ``x0_fraction`` of them are instead its one-step x0 prediction from the (prompted) clip noised to
    a random timestep, the off-manifold latents a distilling student's single-step x0 actually is, so the reward
    is fitted where the distiller queries it rather than only on clean clips. Targets see the decoded clip after the
    world's lead-in frames (``world_cfg.lead_in``), the frames a student's video is judged on."""
    codec = autoencoder or AUTOENCODERS["AutoencoderKL"]
    lead_in = (world_cfg or world.WorldConfig()).lead_in
    prompts_pool = prompt_pool or [a.prompt for a in world.combinations("train")]
    clips = clips or world_clips(vae, seed, world_cfg, codec)
    lats, prompts, targets = [], [], []
    for start in range(0, num, chunk):
        rng = np.random.default_rng([seed, start, 5])
        z, batch_prompts = clips(start, min(chunk, num - start))
        n = z.shape[0]
        share = x0_fraction if denoiser is not None else 0.0
        variant = rng.choice(5, size=n, p=[*(np.array([0.4, 0.2, 0.2, 0.2]) * (1 - share)), share])
        for i in np.flatnonzero(variant == 1):
            batch_prompts[i] = prompts_pool[int(rng.integers(len(prompts_pool)))]
        reverse = torch.from_numpy(variant == 2)
        z = torch.where(reverse[:, None, None, None, None], z.flip(2), z)
        noise_level = torch.from_numpy(np.where(variant == 3, rng.uniform(0.3, 1.0, size=n), 0.0)).float()
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z = z + noise_level[:, None, None, None, None] * z.std() * torch.randn(z.shape, generator=gen)
        pick = np.flatnonzero(variant == 4)
        if len(pick):
            rows = torch.from_numpy(pick)
            z[rows] = denoiser(z[rows], [batch_prompts[i] for i in pick], rng).float()
        frames = codec.decode_pixels(vae, z).clamp(-1, 1)[:, lead_in:]
        lats.append(z.float())
        prompts.extend(batch_prompts)
        targets.append(target_fn(frames, batch_prompts).float().reshape(n))
    return torch.cat(lats), prompts, torch.cat(targets)


def train_latent_reward(
    vae,
    target: str | TargetFn = "builtin-video",
    *,
    steps: int = 300,
    batch: int = 32,
    num_samples: int = 1024,
    lr: float = 2e-3,
    seed: int = 0,
    cfg: RewardConfig | None = None,
    world_cfg: world.WorldConfig | None = None,
    progress: bool = True,
    denoiser: Denoiser | None = None,
    x0_fraction: float = 0.0,
    data: PreparedData | None = None,
    autoencoder: Autoencoder | None = None,
) -> tuple[LatentReward, dict[str, object]]:
    """Fit a :class:`LatentReward` to ``target`` on ``vae``'s latent space (``autoencoder``: its family's plug point,
    the per-frame AutoencoderKL by default; a causal one takes ``world_cfg.lead_in`` frames first).

    Returns the frozen model and a history: per-step losses, the target's mean / std, the normalised MSE on the
    fitted samples before and after training, and the MSE and Pearson correlation between prediction and
    target on the held-back last fifth of the samples. ``denoiser`` / ``x0_fraction``: see
    :func:`build_latent_dataset` (:func:`teacher_x0_denoiser` makes one from a teacher). ``data``: a prepared dataset
    (made for this VAE) whose clips and captions replace the world's.
    """
    if steps < 1 or batch < 2 or num_samples < 10:
        raise ValueError(f"need steps >= 1, batch >= 2, num_samples >= 10; got {steps}, {batch}, {num_samples}")
    target_name, target_fn = resolve_target(target)
    torch.manual_seed(seed)
    clips, pool = prepared_clips(data) if data is not None else (None, None)
    if data is not None and num_samples > len(data):
        raise ValueError(f"--data {data.path} holds {len(data)} clips, fewer than --samples {num_samples}: lower --samples or prepare more")
    latents, prompts, targets = build_latent_dataset(vae, target_fn, num_samples, seed, world_cfg, denoiser=denoiser, x0_fraction=x0_fraction,
                                                     clips=clips, prompt_pool=pool, autoencoder=autoencoder)
    n_fit = num_samples - num_samples // 5
    mean, std = float(targets[:n_fit].mean()), float(targets[:n_fit].std().clamp_min(1e-3))
    base = cfg if cfg is not None else RewardConfig(name="latent")
    cfg = base.replace(name="latent", latent_channels=int(latents.shape[1]), target=target_name, target_mean=mean, target_std=std)
    model = LatentReward(cfg)

    @torch.no_grad()
    def normalised_mse(lo: int, hi: int) -> float:
        pred = model(latents[lo:hi], prompts[lo:hi])
        return float(F.mse_loss((pred - mean) / std, (targets[lo:hi] - mean) / std))

    fit_mse_start = normalised_mse(0, n_fit)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=f"latent reward ({target_name})", disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = torch.from_numpy(np.random.default_rng([seed, step, 6]).choice(n_fit, size=min(batch, n_fit), replace=False))
        pred = model(latents[idx], [prompts[i] for i in idx.tolist()])
        loss = F.mse_loss((pred - mean) / std, (targets[idx] - mean) / std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    model.freeze()
    with torch.no_grad():
        pred = model(latents[n_fit:], prompts[n_fit:])
    corr = float(torch.corrcoef(torch.stack([pred, targets[n_fit:]]))[0, 1])
    history = {"loss": losses, "target": target_name, "target_mean": mean, "target_std": std,
               "heldback_pearson": corr if math.isfinite(corr) else 0.0, "samples": num_samples,
               "fit_mse_start": fit_mse_start, "fit_mse_end": normalised_mse(0, n_fit), "heldback_mse": normalised_mse(n_fit, num_samples)}
    log.info("latent reward: target %s, held-back Pearson r = %.3f", target_name, corr)
    return model, history


def teacher_x0_denoiser(teacher, t_range: tuple[int, int] = (100, 950), guidance: tuple[float, float] = (2.0, 5.0)) -> Denoiser:
    """The teacher's one-step x0 estimate (CFG at a random scale in ``guidance``) from clean latents noised to a
    random timestep in ``t_range``: what a consistency student's single-step x0 looks like early in distillation."""

    sched = teacher.schedule  # DDPM or flow: (alpha, sigma) per index, the network's timestep
    ptype = sched.prediction_type

    @torch.no_grad()
    def denoise(z: torch.Tensor, prompts: list[str], rng: np.random.Generator) -> torch.Tensor:
        n = z.shape[0]
        t = rng.integers(t_range[0], t_range[1] + 1, size=n)
        w = torch.from_numpy(rng.uniform(*guidance, size=n)).float()[:, None, None, None, None]
        alpha, sigma = (torch.from_numpy(np.asarray(v, np.float32)) for v in sched.alpha_sigma(t))
        eps = torch.from_numpy(rng.standard_normal(z.shape).astype(np.float32))
        x_t = param.add_noise(z, eps, alpha, sigma)
        text = encode_text(teacher, list(prompts) + [""] * n)
        t_net = torch.from_numpy(sched.model_timestep(t))
        out = teacher.denoise(torch.cat([x_t, x_t]), torch.cat([t_net, t_net]), text)
        cond, uncond = out.chunk(2)
        x0, _ = param.to_x0_eps(ptype, uncond + w * (cond - uncond), x_t, alpha, sigma)
        return x0

    return denoise
