"""World clips encoded once into a model's latent space, cached on disk as .npy (no pickles)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from turbo_edge.core import world

log = logging.getLogger(__name__)


def to_pixels(clips_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(clips_uint8)).float().div(127.5).sub(1.0)
    return x.movedim(-1, -3).contiguous()


@torch.no_grad()
def encode_world(vae, num_clips: int, seed: int, cache_dir: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Encode ``num_clips`` clips of ``split``: latents float16 [N, F, C, h, w] (scaled) and labels int64 [N, 3].

    The cache is reused only when its size matches; the latents file is renamed into place last, so an
    interrupted encode is redone rather than half-read.
    """
    cache = Path(cache_dir)
    lat_path, lab_path, key_path = cache / "latents.npy", cache / "labels.npy", cache / "dataset.json"
    key = dataset_key(vae, num_clips, seed, split)
    if lat_path.is_file() and lab_path.is_file() and key_path.is_file():
        if json.loads(key_path.read_text()) == key:
            log.info("reusing encoded dataset %s", lat_path)
            return np.load(lat_path, allow_pickle=False), np.load(lab_path, allow_pickle=False)
        log.info("encoded dataset %s was made by another VAE or world setting: re-encoding", lat_path)
    sf = vae.config.scaling_factor
    lats, labels = [], []
    for start in tqdm(range(0, num_clips, 128), desc="encode dataset"):
        idx = range(start, min(start + 128, num_clips))
        attrs, clips = world.batch(split, seed, idx)
        frames = to_pixels(clips.reshape(-1, *clips.shape[2:]))
        z = vae.encode(frames).latent_dist.mean * sf
        lats.append(z.reshape(len(idx), clips.shape[1], *z.shape[1:]).half().numpy())
        labels.extend(a.labels for a in attrs)
    lat, lab = np.concatenate(lats), np.asarray(labels, dtype=np.int64)
    cache.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)  # first: a half-replaced cache (new labels, old latents) must never match a key
    np.save(lab_path, lab)
    tmp = cache / "latents.tmp.npy"
    np.save(tmp, lat)
    tmp.replace(lat_path)
    key_path.write_text(json.dumps(key, indent=1) + "\n")  # last: a cache without its key is never reused
    return lat, lab


def dataset_key(vae, num_clips: int, seed: int, split: str) -> dict[str, object]:
    """What an encoded dataset depends on: the world setting and every VAE weight (a changed teacher re-encodes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return {"split": split, "seed": int(seed), "num_clips": int(num_clips),
            "scaling_factor": float(vae.config.scaling_factor), "vae_sha256": h.hexdigest()}


def prompts_for(labels: np.ndarray, drop: np.ndarray | None = None) -> list[str]:
    """Prompts for label rows [N, 3]; rows with ``drop`` set get the empty (unconditional) prompt."""
    lookup = {a.labels: a.prompt for a in world.all_combinations()}
    drop = np.zeros(len(labels), dtype=bool) if drop is None else drop
    return ["" if d else lookup[tuple(int(v) for v in lab)] for lab, d in zip(labels, drop)]
