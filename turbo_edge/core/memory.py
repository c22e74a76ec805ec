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
    """Parameters of the unet, vae and text_encoder named by ``path``'s configs, and one UNet call's activations."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    unet_cfg, vae_cfg = _config(path / "unet"), _config(path / "vae")
    builders = {
        "unet": lambda: UNet3DConditionModel.from_config(unet_cfg),
        "vae": lambda: AutoencoderKL.from_config(vae_cfg),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(path / "text_encoder")),
    }
    try:
        params = {name: _meta_parameters(build) for name, build in builders.items()}
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelLayoutError(f"{path}: a component config cannot build its model ({type(exc).__name__}: {exc}); check its config.json") from exc
    channels = [int(c) for c in unet_cfg.get("block_out_channels", [])] or [0]
    vae_factor = 2 ** (len(vae_cfg.get("block_out_channels", [1])) - 1)
    size = int(vae_cfg.get("sample_size", 256))
    latent = max(1, size // vae_factor)
    if frames is None:
        from turbo_edge.spec.card import read_card

        card = read_card(path)
        frames = int(card.frames) if card is not None and card.frames else 16
    largest = max(c * (latent // 2**i) ** 2 for i, c in enumerate(channels))
    activation = 2 * frames * largest * 4 * ACTIVATION_FACTOR
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
