"""Config sanity before allocation: what a model directory will cost in memory, from its configs alone.

``from_pretrained`` allocates every parameter the config names before it reads a single weight, so a config with
``block_out_channels [100000, 100000, 100000]`` asks for ~160 GB and is stopped only by the kernel. Here each
weighted component is built on PyTorch's meta device (``with torch.device("meta")``: shapes, no storage), its
parameters counted, and one denoiser call's activations estimated from the UNet config at the model's own video
size; ``check_fits`` refuses, with the numbers, what cannot fit the memory this machine has free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turbo_edge.spec.errors import ModelLayoutError
from turbo_edge.spec.host import mem_available_bytes

GiB = 1024**3
# Live feature maps in a UNet block while one runs (input, resnet intermediates, norm, attention projections):
# a coarse factor on the largest block's output, so the activation figure is an order of magnitude, not a bound.
ACTIVATION_FACTOR = 8
HEADROOM = 0.9  # of MemAvailable: the rest is the interpreter, the libraries and the page cache's floor


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: dict[str, int]  # component -> parameter count
    bytes_per_parameter: int
    activation_bytes: int  # one denoiser call at the model's own size, batch 2 (CFG)

    @property
    def weight_bytes(self) -> int:
        return sum(self.parameters.values()) * self.bytes_per_parameter

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


def _meta_parameters(build: Any) -> int:
    import torch

    from turbo_edge.core.models import own_config_keys_quiet

    # Every factory call on the meta device (accelerate's init_empty_weights still creates each parameter on the
    # CPU before moving it, which is the 160 GB allocation this check exists to avoid).
    with torch.device("meta"), own_config_keys_quiet():
        module = build()
    return sum(p.numel() for p in module.parameters())


def _config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLayoutError(f"{path / 'config.json'} is missing or not valid JSON ({exc}); re-save the model with save_pretrained") from exc


def estimate(path: str | os.PathLike[str], bytes_per_parameter: int = 4, frames: int | None = None) -> MemoryEstimate:
    """Parameters of the denoiser, vae and text_encoder named by ``path``'s configs, and one denoiser call's activations."""
    import transformers

    from turbo_edge.core.families import family_of_pipeline
    from turbo_edge.spec.card import read_card

    path = Path(path)
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLayoutError(f"{path / 'model_index.json'} is missing or not valid JSON ({exc})") from exc
    family = family_of_pipeline(index.get("_class_name"))
    if family is None:
        raise ModelLayoutError(f"{path} holds a {index.get('_class_name')!r}, not a text-to-video pipeline turbo-edge knows")
    den_cfg, vae_cfg = _config(path / family.denoiser.folder), _config(path / "vae")
    text_model = getattr(transformers, family.text.transformers_class)
    builders = {
        family.denoiser.folder: lambda: family.denoiser.module_class().from_config(den_cfg),
        "vae": lambda: family.autoencoder.module_class().from_config(vae_cfg),
        "text_encoder": lambda: text_model(text_model.config_class.from_pretrained(path / "text_encoder")),
    }
    try:
        params = {name: _meta_parameters(build) for name, build in builders.items()}
    except (TypeError, ValueError, KeyError, OSError) as exc:
        raise ModelLayoutError(f"{path}: a component config cannot build its model ({type(exc).__name__}: {exc}); check its config.json") from exc
    card = read_card(path)
    if frames is None:
        frames = int(card.frames) if card.frames else family.default_frames
    try:
        geometry = family.autoencoder.config_geometry(vae_cfg)
        size = int(card.height or family.autoencoder.default_size(vae_cfg) or 256)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelLayoutError(f"{path / 'vae' / 'config.json'} does not describe an autoencoder ({type(exc).__name__}: {exc})") from exc
    latent = max(1, size // geometry.spatial_factor)
    latent_frames = max(1, geometry.latent_frames(frames))
    if family.name == "unet3d":
        channels = [int(c) for c in den_cfg.get("block_out_channels", [])] or [0]
        largest = max(c * (latent // 2**i) ** 2 for i, c in enumerate(channels))
        activation = 2 * frames * largest * 4 * ACTIVATION_FACTOR
    else:  # a DiT: every block holds tokens x width, its FFN tokens x ffn_dim
        patch = family.denoiser.spatial_patch(den_cfg)
        tokens = latent_frames * max(1, latent // patch) ** 2
        width = int(den_cfg.get("num_attention_heads", 1)) * int(den_cfg.get("attention_head_dim", 1))
        activation = 2 * tokens * max(width, int(den_cfg.get("ffn_dim", 0))) * 4 * ACTIVATION_FACTOR
    return MemoryEstimate(params, bytes_per_parameter, activation)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def check_fits(path: str | os.PathLike[str], bytes_per_parameter: int = 4, available: int | None = None) -> MemoryEstimate:
    """``estimate`` then refuse (``ModelLayoutError``, one line with the numbers) what exceeds the free memory."""
    est = estimate(path, bytes_per_parameter)
    available = mem_available_bytes() if available is None else available
    if available is not None and est.total_bytes > HEADROOM * available:
        counts = ", ".join(f"{name} {_count(n)}" for name, n in est.parameters.items())
        raise ModelLayoutError(
            f"{path} needs ~{est.total_bytes / GiB:.1f} GiB ({counts} parameters at {bytes_per_parameter} bytes = "
            f"{est.weight_bytes / GiB:.1f} GiB, ~{est.activation_bytes / GiB:.1f} GiB for one denoiser call) but this machine "
            f"has {available / GiB:.1f} GiB available; check the configs' channel widths, or use a machine with more memory"
        )
    return est
