"""Scores for a user's own prompts, where the world's evaluator (which reads world attributes only) does not apply.

- CLIP text-frame similarity: the cosine of a prompt's text embedding with each frame's image embedding, averaged
  over the clip's frames (per prompt), then over prompts (CLIPSIM, as in the text-to-video literature).
- Frame consistency: the mean cosine of consecutive frames' CLIP image embeddings (1.0 for a still clip).
- Fréchet distance between Gaussians fitted to per-frame features of a feature model the user names (pooled / CLS
  output of any transformers vision model) for the generated frames and for reference frames.

Both models are local directories loaded with ``from_pretrained(local_files_only=True)``, safetensors only, and
preprocess frames with their own image processor. None of these scores is a training reward (docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from turbo_edge.core.pipeline_io import PICKLE_SUFFIXES
from turbo_edge.core.prepared import PROVENANCE_KEYS

log = logging.getLogger(__name__)
FRAME_CHUNK = 64  # frames per model call


def _check_model_dir(path: str | Path, flag: str, what: str) -> Path:
    """A local transformers model directory with safetensors weights, or a one-line error saying what to do."""
    root = Path(path)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{flag} {root} is not a transformers model directory (no config.json): give a local {what} "
                                "saved with save_pretrained")
    files = [f for f in root.iterdir() if f.is_file()]
    if not any(f.name.endswith(".safetensors") for f in files):
        pickles = [f.name for f in files if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise ValueError(f"{flag} {root} has only pickle weights {pickles}; turbo-edge loads safetensors only: convert them once "
                             "in a trusted environment (load, then save_pretrained(..., safe_serialization=True))")
        raise FileNotFoundError(f"{flag} {root} has no .safetensors weights: save the model there with save_pretrained")
    return root


def config_sha256(path: str | Path) -> str:
    """sha256 of a model's config.json without the keys that record where or with what it was saved."""
    config = json.loads((Path(path) / "config.json").read_text())
    kept = {k: v for k, v in config.items() if k not in PROVENANCE_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def _load_image_processor(root: Path, flag: str) -> Any:
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(root), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{flag} {root} has no usable image processor ({_first_sentence(str(exc))}): save the model's "
                         "processor beside it (processor.save_pretrained)") from None


def _first_sentence(text: str, limit: int = 240) -> str:
    """A library's message shortened at a sentence or word boundary (never mid-word), marked when shortened."""
    text = " ".join(text.split())
    end = text.find(". ")
    if 0 < end < limit:
        return text[:end + 1]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def _pixels(processor: Any, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> the model's pixel_values, resized and normalised by its own image processor."""
    return processor(images=list(frames), return_tensors="pt")["pixel_values"]


def _pooled(out: Any) -> torch.Tensor:
    """Features of a model call: a tensor as is; else image_embeds, pooler_output, or the first (CLS) token."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "pooler_output"):
        value = getattr(out, key, None)
        if value is not None:
            return value.flatten(1)
    return out.last_hidden_state[:, 0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclasses.dataclass
class ClipModel:
    """A local CLIP model (``transformers.CLIPModel``) with its image processor and tokenizer."""

    path: Path
    model: Any
    processor: Any
    tokenizer: Any

    @classmethod
    def load(cls, path: str | Path) -> ClipModel:
        from transformers import AutoTokenizer, CLIPModel

        root = _check_model_dir(path, "--clip", "CLIP model (transformers CLIPModel)")
        model_type = json.loads((root / "config.json").read_text()).get("model_type")
        if model_type != "clip":
            raise ValueError(f"--clip {root} holds a {model_type!r} model, not a CLIP model (model_type 'clip'): give a CLIPModel "
                             "directory (text and vision towers)")
        # float32 whatever dtype it was saved in: CPU kernels and the processor's pixels are float32.
        model = CLIPModel.from_pretrained(str(root), local_files_only=True, use_safetensors=True, dtype=torch.float32).eval()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--clip {root} has no usable tokenizer ({' '.join(str(exc).split())[:200]}): save the CLIP "
                             "processor or tokenizer beside the model") from None
        return cls(root, model, _load_image_processor(root, "--clip"), tokenizer)

    def describe(self) -> dict[str, Any]:
        return {"name": self.path.name, "path": str(self.path.resolve()), "config_sha256": config_sha256(self.path)}

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> unit-norm image embeddings [N, D]."""
        parts = [_pooled(self.model.get_image_features(pixel_values=_pixels(self.processor, frames[i:i + FRAME_CHUNK])))
                 for i in range(0, len(frames), FRAME_CHUNK)]
        return _unit(torch.cat(parts).double().numpy())

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> np.ndarray:
        """Prompts -> unit-norm text embeddings [P, D] (truncated to the text tower's positions)."""
        limit = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"))
        return _unit(_pooled(out).double().numpy())


def text_frame_similarity(text: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Unit text embeddings [B, D] and unit frame embeddings [B, F, D] -> per-clip mean cosine [B]."""
    return np.einsum("bd,bfd->bf", text, frames).mean(axis=1)


def frame_consistency(frames: np.ndarray) -> np.ndarray:
    """Unit frame embeddings [B, F, D] -> per-clip mean cosine of consecutive frames [B] (1.0 for one frame)."""
    if frames.shape[1] < 2:
        return np.ones(frames.shape[0])
    return (frames[:, 1:] * frames[:, :-1]).sum(axis=-1).mean(axis=1)


def clip_scores(clip: ClipModel, clips: np.ndarray, prompts: list[str]) -> dict[str, Any]:
    """CLIP text-frame similarity and frame consistency of uint8 clips [B, F, H, W, 3] for their prompts."""
    if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
        raise ValueError(f"expected uint8 clips [B, F, H, W, 3], got {clips.dtype} {list(clips.shape)}")
    if len(clips) != len(prompts):
        raise ValueError(f"{len(clips)} clips but {len(prompts)} prompts")
    b, f = clips.shape[:2]
    frames = clip.image_embeddings(clips.reshape(b * f, *clips.shape[2:])).reshape(b, f, -1)
    similarity = text_frame_similarity(clip.text_embeddings(prompts), frames)
    consistency = frame_consistency(frames)
    return {
        **clip.describe(),
        "text_frame_similarity": float(similarity.mean()),
        "frame_consistency": float(consistency.mean()),
        "n_videos": b, "frames_per_video": f,
        "per_prompt": [{"prompt": p, "text_frame_similarity": float(s), "frame_consistency": float(c)}
                       for p, s, c in zip(prompts, similarity, consistency)],
    }


@dataclasses.dataclass
class FeatureModel:
    """A local transformers vision model (``AutoModel`` with image input): pooled / CLS features per frame."""

    path: Path
    model: Any
    processor: Any

    @classmethod
    def load(cls, path: str | Path) -> FeatureModel:
        from transformers import AutoModel

        root = _check_model_dir(path, "--fd-features", "vision model (e.g. a CLIP vision tower)")
        try:
            model = AutoModel.from_pretrained(str(root), local_files_only=True, use_safetensors=True, dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--fd-features {root} does not load as a transformers AutoModel ({' '.join(str(exc).split())[:200]})") from None
        return cls(root, model, _load_image_processor(root, "--fd-features"))

    def describe(self) -> dict[str, Any]:
        return {"name": self.path.name, "path": str(self.path.resolve()), "config_sha256": config_sha256(self.path)}

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float64 [N, D]. A full CLIP model gives its projected image embeddings."""
        call: Callable[..., Any] = getattr(self.model, "get_image_features", None) or self.model
        parts = [_pooled(call(pixel_values=_pixels(self.processor, frames[i:i + FRAME_CHUNK]))) for i in range(0, len(frames), FRAME_CHUNK)]
        return torch.cat(parts).double().numpy()


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004) covariance of samples ``x`` [n, d]: the sample covariance shrunk towards ``mu * I``
    (``mu`` its mean eigenvalue) by the weight that minimises the expected Frobenius error; invertible for n <= d."""
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    delta = ((s - mu * np.eye(d)) ** 2).sum() / d
    # The spread of the per-sample outer products around s: sum_k ||x_k x_k^T - s||^2 / n^2, expanded.
    beta = ((xc ** 2).sum(axis=1) ** 2).sum() / n - (s ** 2).sum()
    beta = min(beta / (n * d), delta)
    shrinkage = float(beta / delta) if delta > 0 else 1.0
    return shrinkage * mu * np.eye(d) + (1 - shrinkage) * s, shrinkage


@dataclasses.dataclass
class GaussianStats:
    mean: np.ndarray
    cov: np.ndarray
    samples: int
    shrinkage: float | None  # None: the sample covariance; else the Ledoit-Wolf weight


def gaussian_stats(features: np.ndarray, name: str) -> GaussianStats:
    """Mean and covariance of ``features`` [n, d]; with n <= d the sample covariance is singular, so one warning
    line and a Ledoit-Wolf shrunk covariance instead."""
    n, d = features.shape
    if n < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 {name} frames, got {n}")
    if n <= d:
        cov, shrinkage = ledoit_wolf(features)
        log.warning("FD: %d %s frames for %d feature dims: the sample covariance is singular; using a Ledoit-Wolf shrunk covariance "
                    "(weight %.3f)", n, name, d, shrinkage)
        return GaussianStats(features.mean(axis=0), cov, n, shrinkage)
    return GaussianStats(features.mean(axis=0), np.cov(features, rowvar=False), n, None)


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)), the squared 2-Wasserstein distance of two Gaussians."""
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # a near-singular product: offset both a little, as pytorch-fid does
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean), 0.0))


def fd_score(model: FeatureModel, generated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Fréchet distance between per-frame features of uint8 clips [B, F, H, W, 3] and reference clips [M, F', H', W', 3]."""
    gen = model.features(generated.reshape(-1, *generated.shape[2:]))
    ref = model.features(reference.reshape(-1, *reference.shape[2:]))
    a, b = gaussian_stats(gen, "generated"), gaussian_stats(ref, "reference")
    return {
        **model.describe(),
        "fd": frechet_distance(a.mean, a.cov, b.mean, b.cov),
        "feature_dims": int(gen.shape[1]),
        "generated_frames": a.samples, "reference_frames": b.samples,
        "covariance": {"generated": "sample" if a.shrinkage is None else f"ledoit-wolf {a.shrinkage:.4f}",
                       "reference": "sample" if b.shrinkage is None else f"ledoit-wolf {b.shrinkage:.4f}"},
    }
