"""The reward-model interface, the world-vocabulary text encoder the builtin rewards share, and their storage.

A reward is frozen (no parameter takes gradients) but differentiable with respect to its input, so the
distiller can push the student's decoded single-step x0 uphill. Builtin rewards are stored as
``model.safetensors`` + ``config.json`` (a :class:`RewardConfig`); nothing is ever loaded from a pickle.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from turbo_edge.core import world
from turbo_edge.spec.config import StageConfig
from turbo_edge.spec.tokenizer import ClipTokenizer
from turbo_edge.spec.tokenizer_files import build_vocab_and_merges

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "rewards"
BUILTIN_KINDS = {"builtin-image": "image", "builtin-video": "video", "latent": "latent"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class RewardModel(nn.Module):
    """``forward(x, prompts) -> [B]`` rewards, higher is better.

    ``kind`` says what ``x`` is: ``"image"`` frames ``[B, K, 3, H, W]`` in [-1, 1] (averaged over K),
    ``"video"`` a clip ``[B, F, 3, H, W]`` in [-1, 1], ``"latent"`` scaled latents ``[B, C, F, h, w]``.
    """

    kind: ClassVar[str] = "image"

    def freeze(self) -> RewardModel:
        """No parameter takes gradients (left-over training gradients are dropped); the input still does."""
        for p in self.parameters():
            p.grad = None
        self.requires_grad_(False)
        return self.eval()

    def check_input(self, x: torch.Tensor, prompts: list[str]) -> None:
        if x.ndim != 5:
            layout = {"image": "[B, K, 3, H, W]", "video": "[B, F, 3, H, W]", "latent": "[B, C, F, h, w]"}[self.kind]
            raise ValueError(f"{type(self).__name__} ({self.kind} reward) expects {layout}, got shape {tuple(x.shape)}")
        if len(prompts) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} inputs but {len(prompts)} prompts")


@dataclasses.dataclass
class RewardConfig(StageConfig):
    """Architecture of a builtin reward model, and (for the latent reward) its target's normalisation."""

    KIND = "reward"

    name: str = "builtin-image"
    embed_dim: int = 64
    width: int = 16
    text_dim: int = 64
    text_layers: int = 1
    max_length: int = 8
    keypoints: int = 4  # video and latent rewards: soft-argmax keypoints tracked over time
    latent_channels: int = 4
    target: str = ""  # latent reward: what it was trained to predict
    target_mean: float = 0.0
    target_std: float = 1.0
    words: list[str] = dataclasses.field(default_factory=world.vocabulary)

    def __post_init__(self) -> None:
        if self.name not in BUILTIN_KINDS:
            raise ValueError(f"reward config name must be one of {list(BUILTIN_KINDS)}, got {self.name!r}")
        for key in ("embed_dim", "width", "text_dim", "text_layers", "keypoints", "latent_channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8 (group norms of 8 groups), got {self.width}")
        if self.max_length < 3:
            raise ValueError(f"max_length must be >= 3 (start, a word, end), got {self.max_length}")
        if self.target_std <= 0:
            raise ValueError(f"target_std must be > 0, got {self.target_std}")


class WorldTextEncoder(nn.Module):
    """CLIP-BPE token ids of the world's words -> embedding + one small transformer -> masked mean pool."""

    def __init__(self, words: list[str], dim: int, out_dim: int, layers: int, max_length: int) -> None:
        super().__init__()
        vocab, merges = build_vocab_and_merges([w.lower() for w in words])
        self.tokenizer = ClipTokenizer(vocab, merges, max_length)
        self.token = nn.Embedding(len(vocab), dim)
        self.position = nn.Parameter(torch.zeros(max_length, dim))
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, out_dim)

    def token_ids(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [P, L] and a mask [P, L] that keeps the start token, the words and the first end token."""
        ids = torch.tensor([self.tokenizer.encode(p).ids for p in prompts], dtype=torch.long)
        is_end = ids == self.tokenizer.eos_id
        after_first_end = (is_end.cumsum(dim=1) - is_end.long()) > 0
        return ids, ~after_first_end

    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids, keep = self.token_ids(prompts)
        h = self.token(ids) + self.position[: ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~keep)
        pooled = (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
        return self.proj(pooled)


def check_safetensors_dir(path: Path, what: str) -> None:
    """A clear error for a missing directory or one holding only pickle checkpoints (never loaded)."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory {path} does not exist")
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{what} directory {path} holds only pickle weights {pickles}; turbo-edge loads safetensors only "
            f"(convert once with `save_pretrained(..., safe_serialization=True)` or safetensors.torch.save_file)"
        )
    raise FileNotFoundError(f"{what} directory {path} has no *.safetensors weights")


def save_reward(model: RewardModel, cfg: RewardConfig, directory: str | Path, metrics: dict | None = None) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    cfg.save(out / "config.json")
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def read_reward_dir(directory: str | Path, name: str) -> tuple[RewardConfig, dict[str, torch.Tensor]]:
    d = Path(directory)
    if not d.is_dir():
        hint = f"; train it with `python -m turbo_edge.core.rewards.train --which {name.removeprefix('builtin-')}`"
        raise FileNotFoundError(f"reward {name!r}: weights directory {d} does not exist{hint}")
    check_safetensors_dir(d, f"reward {name!r}")
    if not (d / "model.safetensors").is_file() or not (d / "config.json").is_file():
        raise FileNotFoundError(f"reward {name!r}: {d} needs model.safetensors and config.json")
    cfg = RewardConfig.load(d / "config.json")
    if cfg.name != name:
        raise ValueError(f"{d} holds a {cfg.name!r} reward, not {name!r}")
    return cfg, load_file(str(d / "model.safetensors"))
