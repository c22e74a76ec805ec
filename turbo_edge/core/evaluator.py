"""The held-out evaluator ("synthetic benchmark"): its own networks, trained on ground-truth clips only.

Never used as a training reward. It scores generated clips against the attributes their prompts name:

- ``content_acc``: per frame, colour and shape both right (averaged over frames and clips);
- ``motion_acc``: the clip's direction of motion right;
- ``all_acc``: the clip's majority colour, majority shape and motion all right;
- ``consistency``: mean cosine similarity of evaluator features of consecutive frames (VBench-style);
- ``fd``: Fréchet distance between evaluator clip features of the generated clips and of real clips of the
  same split (like FVD, with this world's own feature network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import linalg
from torch import nn
from tqdm.auto import tqdm

from turbo_edge.core import world

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "evaluator"


class EvalNet(nn.Module):
    """Per-frame CNN (with coordinate channels, so position survives) + temporal convs for motion."""

    def __init__(self, width: int = 32, feat: int = 128) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.frame_net = nn.Sequential(block(5, w, 2), block(w, 2 * w, 2), block(2 * w, 2 * w, 2))
        self.frame_proj = nn.Linear(2 * w * 16, feat)
        self.colour_head = nn.Linear(feat, len(world.COLOURS))
        self.shape_head = nn.Linear(feat, len(world.SHAPES))
        self.temporal = nn.Sequential(nn.Conv1d(feat, 64, 3, padding=1), nn.SiLU(), nn.Conv1d(64, 64, 3, padding=1), nn.SiLU())
        self.motion_head = nn.Linear(64, len(world.MOTIONS))

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """clips float [B, F, 3, H, W] in [-1, 1] -> [B, F, feat]."""
        b, f, _, h, w = clips.shape
        x = clips.reshape(b * f, 3, h, w)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        coords = torch.stack([xs, ys]).expand(b * f, 2, h, w)
        x = self.frame_net(torch.cat([x, coords], dim=1))
        x = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.frame_proj(x).reshape(b, f, -1)

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.frame_features(clips)
        temporal = self.temporal(F.silu(feats).transpose(1, 2)).mean(dim=2)
        return {
            "frame_features": feats,
            "colour": self.colour_head(F.silu(feats)),
            "shape": self.shape_head(F.silu(feats)),
            "motion": self.motion_head(temporal),
            "clip_features": torch.cat([feats.mean(dim=1), temporal], dim=1),
        }


def to_model_input(clips_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [B, F, H, W, 3] -> float [B, F, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(clips_uint8)).float().div(127.5).sub(1.0).permute(0, 1, 4, 2, 3)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Corruptions a generator's output shows (noise, blur, contrast shifts), so the evaluator judges content, not
    pixel statistics; clips stay recognisable to a person."""
    b = x.shape[0]
    sigma = torch.rand(b, 1, 1, 1, 1, generator=gen) * 0.25
    x = x + sigma * torch.randn(x.shape, generator=gen)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        flat = x[blur].flatten(0, 1)
        x[blur] = F.conv2d(flat, kernel, padding=1, groups=3).reshape(x[blur].shape)
    gain = 1 + (torch.rand(b, 1, 1, 1, 1, generator=gen) - 0.5) * 0.4
    return (x * gain).clamp(-1.5, 1.5)


def train_evaluator(steps: int = 1200, batch: int = 32, seed: int = 0, lr: float = 2e-3) -> EvalNet:
    torch.manual_seed(seed)
    net = EvalNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for step in tqdm(range(steps), desc="evaluator"):
        attrs, clips = world.batch("evaluator", seed, range(step * batch, (step + 1) * batch))
        labels = torch.tensor([a.labels for a in attrs])
        out = net(_augment(to_model_input(clips), gen))
        f = clips.shape[1]
        loss = (
            F.cross_entropy(out["colour"].flatten(0, 1), labels[:, 0].repeat_interleave(f))
            + F.cross_entropy(out["shape"].flatten(0, 1), labels[:, 1].repeat_interleave(f))
            + F.cross_entropy(out["motion"], labels[:, 2])
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def save_evaluator(net: EvalNet, directory: str | Path = ASSET_DIR, meta: dict[str, Any] | None = None) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / "evaluator.safetensors"))
    (d / "evaluator.json").write_text(json.dumps(meta or {}, indent=2) + "\n")


def load_evaluator(directory: str | Path = ASSET_DIR) -> EvalNet:
    path = Path(directory) / "evaluator.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"evaluator weights {path} not found; train them with `turbo-edge evaluator train`")
    net = EvalNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


@dataclass
class EvalResult:
    content_acc: float
    colour_acc: float
    shape_acc: float
    motion_acc: float
    all_acc: float
    consistency: float
    fd: float
    n_videos: int
    # Motion accuracy over the prompts that move (left / right / up / down): "staying still" is the easy class
    # (no change at all), so motion_acc alone can hide directions at chance (0.25 here).
    direction_acc: float = float("nan")
    # Clip counts, rows = the prompt's motion, columns = the evaluator's reading, both in world.MOTIONS order.
    motion_confusion: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


class Evaluator:
    """Scores uint8 clips [B, F, H, W, 3] against the attributes their prompts name."""

    def __init__(self, net: EvalNet | None = None, reference_clips: int = 512) -> None:
        self.net = net if net is not None else load_evaluator()
        self.reference_clips = reference_clips
        self._reference: dict[str, np.ndarray] = {}

    @torch.no_grad()
    def outputs(self, clips: np.ndarray, chunk: int = 64) -> dict[str, np.ndarray]:
        parts = [self.net(to_model_input(clips[i : i + chunk])) for i in range(0, len(clips), chunk)]
        return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}

    def reference_features(self, split: str) -> np.ndarray:
        if split not in self._reference:
            _, clips = world.batch(split, 9999, range(self.reference_clips))
            self._reference[split] = self.outputs(clips)["clip_features"]
        return self._reference[split]

    def score(self, clips: np.ndarray, attrs: list[world.Attributes], split: str = "val") -> EvalResult:
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise ValueError(f"expected uint8 clips [B, F, H, W, 3], got {clips.dtype} {clips.shape}")
        if len(clips) != len(attrs):
            raise ValueError(f"{len(clips)} clips but {len(attrs)} prompts")
        out = self.outputs(clips)
        labels = np.array([a.labels for a in attrs])
        colour = out["colour"].argmax(-1) == labels[:, None, 0]
        shape = out["shape"].argmax(-1) == labels[:, None, 1]
        motion_pred = out["motion"].argmax(-1)
        motion = motion_pred == labels[:, 2]
        confusion = np.zeros((len(world.MOTIONS), len(world.MOTIONS)), dtype=np.int64)
        np.add.at(confusion, (labels[:, 2], motion_pred), 1)
        moving = labels[:, 2] != world.MOTIONS.index("still")
        maj_colour = np.array([np.bincount(r, minlength=6).argmax() for r in out["colour"].argmax(-1)]) == labels[:, 0]
        maj_shape = np.array([np.bincount(r, minlength=4).argmax() for r in out["shape"].argmax(-1)]) == labels[:, 1]
        feats = out["frame_features"]
        unit = feats / (np.linalg.norm(feats, axis=-1, keepdims=True) + 1e-8)
        consistency = float((unit[:, 1:] * unit[:, :-1]).sum(-1).mean())
        fd = frechet_distance(out["clip_features"], self.reference_features(split)) if len(clips) > 1 else float("nan")
        return EvalResult(
            content_acc=float((colour & shape).mean()),
            colour_acc=float(colour.mean()),
            shape_acc=float(shape.mean()),
            motion_acc=float(motion.mean()),
            all_acc=float((maj_colour & maj_shape & motion).mean()),
            consistency=consistency,
            fd=fd,
            n_videos=len(clips),
            direction_acc=float(motion[moving].mean()) if moving.any() else float("nan"),
            motion_confusion=confusion.tolist(),
        )
