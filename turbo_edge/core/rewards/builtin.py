"""Builtin image-text and video-text rewards trained on the synthetic world (HPS- and ViCLIP-like).

Both are small dual encoders trained contrastively on the ``train`` split only; the reward is the cosine
similarity of the visual and text embeddings. They are deliberately unlike the held-out evaluator (which
classifies attributes from coordinate-augmented features): the image encoder pools position away, and the
video encoder tracks soft-argmax keypoints and reads motion from their least-squares slope over time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from turbo_edge.core.rewards.base import RewardConfig, RewardModel, WorldTextEncoder


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """[N, K, h, w] logits -> [N, K, 2] expected (x, y) in [-1, 1] under a spatial softmax."""
    n, k, h, w = heatmaps.shape
    prob = heatmaps.flatten(2).softmax(-1).reshape(n, k, h, w)
    xs = torch.linspace(-1, 1, w, device=heatmaps.device, dtype=heatmaps.dtype)
    ys = torch.linspace(-1, 1, h, device=heatmaps.device, dtype=heatmaps.dtype)
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def time_slope(values: torch.Tensor) -> torch.Tensor:
    """Least-squares slope over normalised time of [B, T, ...] values -> [B, ...]; zero for a single frame.

    Time runs over [0, 1] whatever T is, so strided subsets of a clip give the same slope as the full clip.
    """
    t_count = values.shape[1]
    t = torch.linspace(0, 1, t_count, device=values.device, dtype=values.dtype) if t_count > 1 else values.new_zeros(1)
    t = (t - t.mean()).reshape(1, t_count, *[1] * (values.ndim - 2))
    centred = values - values.mean(dim=1, keepdim=True)
    return (t * centred).sum(1) / (t * t).sum(1).clamp_min(1e-6)


class _DualEncoder(RewardModel):
    """Shared parts: the text tower, a learnable temperature, cosine similarity as the reward."""

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text = WorldTextEncoder(cfg.words, cfg.text_dim, cfg.embed_dim, cfg.text_layers, cfg.max_length)
        self.log_temperature = nn.Parameter(torch.tensor(2.3))  # logit scale exp(2.3) ~ 10 at the start

    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        return F.normalize(self.text(prompts), dim=-1)

    def embed_visual(self, x: torch.Tensor) -> torch.Tensor:  # [B, ...] -> [B, (K,) D], unit norm
        raise NotImplementedError

    def forward(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.check_input(x, prompts)
        v, t = self.embed_visual(x), self.embed_text(prompts)
        if v.ndim == 3:  # image reward: one embedding per frame, averaged similarity
            return (v * t[:, None]).sum(-1).mean(1)
        return (v * t).sum(-1)


class ImageTextReward(_DualEncoder):
    """HPS/CLIP-like: a per-frame CNN with global (position-free) pooling; the prompt's motion words carry no
    signal in one frame, so the text tower learns to weigh colour and shape."""

    kind = "image"

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__(cfg)
        w = cfg.width
        self.cnn = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 1), _conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, 2))
        self.head = nn.Sequential(nn.Linear(4 * w, 2 * w), nn.SiLU(), nn.Linear(2 * w, cfg.embed_dim))

    def embed_visual(self, x: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        h = self.cnn(x.flatten(0, 1))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)
        return F.normalize(self.head(pooled), dim=-1).reshape(b, k, -1)


class VideoTextReward(_DualEncoder):
    """ViCLIP-like: per-frame CNN tokens (content + soft-argmax keypoints) with a normalised-time embedding,
    one temporal transformer layer, and the keypoints' slope over time as an explicit motion feature.
    Works on any number of (evenly strided) frames."""

    kind = "video"

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__(cfg)
        w, k, d = cfg.width, cfg.keypoints, cfg.embed_dim
        self.cnn = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 1))
        self.heatmaps = nn.Conv2d(2 * w, k, 1)
        self.content = nn.Sequential(_conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, 2))
        self.frame_token = nn.Linear(2 * w + 2 * k, d)
        self.time_embed = nn.Linear(1, d)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(d + 4 * k, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))

    def embed_visual(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[:2]
        h = self.cnn(x.flatten(0, 1))
        points = soft_argmax(self.heatmaps(h)).reshape(b, f, -1)  # [B, F, 2K]
        content = self.content(h).mean((2, 3)).reshape(b, f, -1)
        t = torch.linspace(0, 1, f, device=x.device, dtype=x.dtype) if f > 1 else x.new_zeros(1)
        tokens = self.frame_token(torch.cat([content, points], dim=-1)) + self.time_embed(t[:, None])
        pooled = self.temporal(tokens).mean(1)
        motion = torch.cat([time_slope(points), points[:, -1] - points[:, 0]], dim=-1)
        return F.normalize(self.head(torch.cat([pooled, motion], dim=-1)), dim=-1)
