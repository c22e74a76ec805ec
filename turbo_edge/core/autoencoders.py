"""The autoencoder plug point: latent geometry, normalisation, encoding and decoding, one class per kind.

Two kinds today:
- ``PerFrameKL``: diffusers ``AutoencoderKL`` applied frame by frame (ModelScope T2V, zeroscope, the builtin UNet
  teacher): latents ``[C, F, H / s, W / s]`` for ``F`` frames, normalised by ``scaling_factor``.
- ``CausalWan``: diffusers ``AutoencoderKLWan`` (Wan2.1, the builtin DiT teacher): a causal 3D autoencoder whose
  first frame is encoded alone and every following group of ``t`` frames into one latent frame, so a clip has
  ``1 + t * k`` frames and ``1 + k`` latent frames; normalised per channel by ``latents_mean`` / ``latents_std``.

Every stage that encodes or decodes calls through ``Autoencoder``: ``data prepare`` (``encode``), the samplers
and rewards (``decode``), ``generate`` / ``eval`` (``geometry`` checks a clip's size), export (``geometry``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from turbo_edge.core.data import to_pixels


@dataclass(frozen=True)
class LatentGeometry:
    """How pixels map to latents: channels, spatial and temporal factors, and whether the first frame is alone."""

    channels: int
    spatial_factor: int
    temporal_factor: int = 1
    causal_first_frame: bool = False

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_factor + 1 if self.causal_first_frame else frames // self.temporal_factor

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.temporal_factor if self.causal_first_frame else latent_frames * self.temporal_factor

    def lead_in_for(self, frames: int) -> int:
        """Frames to render before a clip of ``frames`` so the whole fits the autoencoder: a causal one takes 1 + tk
        (the world's 8-frame clips with Wan's t = 4: one lead-in frame), a per-frame one none."""
        return (1 - frames) % self.temporal_factor if self.causal_first_frame else 0

    def check(self, frames: int, height: int, width: int, spatial_multiple: int | None = None) -> None:
        """Refuse a clip geometry the autoencoder (and a patchifying denoiser: ``spatial_multiple``) cannot take, in
        one line naming the rule."""
        multiple = spatial_multiple or self.spatial_factor
        if frames < 1 or height < 1 or width < 1:
            raise ValueError(f"frames, height and width must be positive, got {frames}x{height}x{width}")
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple} for this model, got {height}x{width}")
        t = self.temporal_factor
        if self.causal_first_frame and (frames - 1) % t:
            raise ValueError(f"this model's causal autoencoder takes 1 + {t}k frames ((frames - 1) % {t} == 0: 1, {1 + t}, {1 + 2 * t}, ...), "
                             f"got {frames}")
        if not self.causal_first_frame and frames % t:
            raise ValueError(f"frames must be a multiple of the autoencoder's temporal factor {t}, got {frames}")

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "spatial_factor": self.spatial_factor, "temporal_factor": self.temporal_factor,
                "causal_first_frame": self.causal_first_frame}


class Autoencoder(ABC):
    name: ClassVar[str]
    diffusers_class: ClassVar[str]

    @abstractmethod
    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module: ...

    def module_class(self) -> type:
        import diffusers

        return getattr(diffusers, self.diffusers_class)

    @abstractmethod
    def config_geometry(self, config: dict[str, Any]) -> LatentGeometry:
        """The geometry from the folder's ``config.json`` alone (before any weight loads)."""

    def geometry(self, vae: torch.nn.Module) -> LatentGeometry:
        return self.config_geometry(dict(vae.config))

    @abstractmethod
    def normalisation(self, vae: torch.nn.Module) -> dict[str, Any]:
        """The numbers that map the autoencoder's raw latents to the denoiser's (recorded in cards and manifests)."""

    @abstractmethod
    def encode(self, vae: torch.nn.Module, clips: np.ndarray) -> torch.Tensor:
        """uint8 clips [B, F, H, W, 3] -> normalised latents [B, f, C, h, w] (the posterior mean; a DATA's layout)."""

    @abstractmethod
    def decode_pixels(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, f, h, w] -> float frames [B, F, 3, H, W] in [-1, 1]; differentiable (rewards)."""

    def decode_frames(self, vae: torch.nn.Module, latents: torch.Tensor, frame_idx: np.ndarray) -> torch.Tensor:
        """Chosen frames of the decoded clip [B, K, 3, H, W], differentiable (the distiller's image / video rewards).
        The whole clip is decoded (a causal decoder's frames depend on the latents before them)."""
        return self.decode_pixels(vae, latents)[:, torch.from_numpy(np.asarray(frame_idx))]

    def default_size(self, config: dict[str, Any]) -> int | None:
        """The frame size the autoencoder's config names, if any."""
        return None

    @torch.no_grad()
    def decode(self, vae: torch.nn.Module, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents [B, C, f, h, w] -> uint8 frames [B, F, H, W, 3]."""
        images = self.decode_pixels(vae, latents)
        images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 1, 3, 4, 2).numpy()


class PerFrameKL(Autoencoder):
    """diffusers ``AutoencoderKL`` frame by frame; ``scaling_factor`` normalises."""

    name = "kl_per_frame"
    diffusers_class = "AutoencoderKL"
    CHUNK = 64  # frames a decode call takes at once

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module:
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)

    def config_geometry(self, config: dict[str, Any]) -> LatentGeometry:
        return LatentGeometry(int(config.get("latent_channels", 4)), 2 ** (len(config["block_out_channels"]) - 1))

    def normalisation(self, vae: torch.nn.Module) -> dict[str, Any]:
        return {"scaling_factor": float(vae.config.scaling_factor)}

    def default_size(self, config: dict[str, Any]) -> int | None:
        size = config.get("sample_size")
        return int(size[0] if isinstance(size, (list, tuple)) else size) if size else None

    @torch.no_grad()
    def encode(self, vae: torch.nn.Module, clips: np.ndarray) -> torch.Tensor:
        z = vae.encode(to_pixels(clips.reshape(-1, *clips.shape[2:]))).latent_dist.mean * vae.config.scaling_factor
        return z.reshape(clips.shape[0], clips.shape[1], *z.shape[1:])

    def decode_frames(self, vae: torch.nn.Module, latents: torch.Tensor, frame_idx: np.ndarray) -> torch.Tensor:
        """Frame by frame: only the chosen latent frames are decoded."""
        return self.decode_pixels(vae, latents[:, :, torch.from_numpy(np.asarray(frame_idx))])

    def decode_pixels(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / vae.config.scaling_factor
        images = torch.cat([vae.decode(chunk).sample for chunk in flat.split(self.CHUNK)])
        return images.reshape(b, f, *images.shape[1:])


class CausalWan(Autoencoder):
    """diffusers ``AutoencoderKLWan``: causal in time; ``latents_mean`` / ``latents_std`` normalise each channel."""

    name = "wan_causal"
    diffusers_class = "AutoencoderKLWan"

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype) -> torch.nn.Module:
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)

    def config_geometry(self, config: dict[str, Any]) -> LatentGeometry:
        down = list(config.get("temperal_downsample", [False, True, True]))
        spatial = 2 ** len(down)
        if config.get("patch_size"):  # Wan2.2's autoencoder folds a pixel patch into its channels first
            spatial *= int(config["patch_size"])
        return LatentGeometry(int(config.get("z_dim", 16)), spatial, 2 ** sum(bool(d) for d in down), causal_first_frame=True)

    def _stats(self, vae: torch.nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(vae.config.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalisation(self, vae: torch.nn.Module) -> dict[str, Any]:
        return {"latents_mean": [float(v) for v in vae.config.latents_mean], "latents_std": [float(v) for v in vae.config.latents_std]}

    @torch.no_grad()
    def encode(self, vae: torch.nn.Module, clips: np.ndarray) -> torch.Tensor:
        pixels = to_pixels(clips).permute(0, 2, 1, 3, 4).to(next(vae.parameters()).dtype)  # [B, 3, F, H, W]
        z = vae.encode(pixels).latent_dist.mean
        mean, std = self._stats(vae, z)
        return ((z - mean) / std).permute(0, 2, 1, 3, 4).float()

    def decode_pixels(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(vae, latents)
        video = vae.decode((latents * std + mean).to(next(vae.parameters()).dtype)).sample  # [B, 3, F, H, W]
        return video.float().permute(0, 2, 1, 3, 4)


AUTOENCODERS: dict[str, Autoencoder] = {a.diffusers_class: a for a in (PerFrameKL(), CausalWan())}


def autoencoder_for(class_name: str | None) -> Autoencoder:
    if class_name not in AUTOENCODERS:
        raise ValueError(f"autoencoder {class_name!r} is not supported; turbo-edge handles {sorted(AUTOENCODERS)}")
    return AUTOENCODERS[class_name]
