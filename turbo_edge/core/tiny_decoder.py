"""A tiny video decoder in diffusers form, distilled against a model's own full VAE decoder (``turbo-edge decoder train``).

The design follows what the field found for fast video decoders (TAESD / TAEHV, learned from their descriptions):
per-frame 2D convolutions with ReLU, no normalisation and no attention, and a cheap temporal path, *memory blocks*:
each block's first convolution sees its own frame's features concatenated with the previous frame's (zeros before
the first frame), so the decoder is causal in time and every frame still costs one 2D pass. Spatial upsampling is
nearest x2 + 3x3 convolution; temporal upsampling (for causal video autoencoders such as Wan's, 1 + 4k latent
frames) is a 1x1 convolution to ``stride`` times the channels reshaped into ``stride`` frames, and with
``causal_first_frame`` the first ``total_stride - 1`` output frames are dropped, so latent frame 0 decodes to one
frame and every later one to ``total_stride`` frames, as the causal autoencoder's own decoder does.

``TinyDecoder`` takes the *scaled* latents [B, C, F, h, w] the denoiser produces (what the full decoder's caller
divides by ``scaling_factor``, or un-normalises with per-channel ``latents_mean`` / ``latents_std`` for Wan) as they
are: that space has about unit variance, the one a learned first layer wants, so it needs no autoencoder constants
(a soft clamp, ``latent_clamp * tanh(z / latent_clamp)``, bounds latents far off the training distribution). It
returns frames [B, F', 3, H, W] in [-1, 1]. It is a ``ModelMixin, ConfigMixin``, so
``save_pretrained`` / ``from_pretrained`` write and read it as safetensors + ``config.json``; a model directory
carries it in ``TINY_FOLDER`` and names it in its card (``spec.card.DecoderVariant``).

``AutoencoderKLTarget`` is the full decoder side the trainer needs for the UNet family's per-frame ``AutoencoderKL``:
target frames and the frozen encoder's features (the perceptual term). A causal Wan autoencoder plugs in as another
class with the same two methods.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

TINY_FOLDER = "tiny_vae"  # the tiny decoder's folder inside a model directory
TINY_NAME = "tiny"  # its variant name in the model card and on the command line


def _conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def previous_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``x`` [B*F, C, H, W] (frames contiguous per clip) shifted one frame later in time, zeros before frame 0."""
    bf, c, h, w = x.shape
    v = x.reshape(bf // frames, frames, c, h, w)
    return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1).reshape(bf, c, h, w)


class MemoryBlock(nn.Module):
    """conv(cat(x, previous frame's x)) -> ReLU -> conv -> ReLU -> conv, plus x, ReLU. ``memory=False``: the
    same block without the previous frame (a purely per-frame decoder)."""

    def __init__(self, channels: int, memory: bool = True) -> None:
        super().__init__()
        self.memory = memory
        self.conv = nn.Sequential(_conv(channels * (2 if memory else 1), channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        inp = torch.cat([x, previous_frames(x, frames)], dim=1) if self.memory else x
        return self.act(self.conv(inp) + x)


class TemporalUpsample(nn.Module):
    """[B*F, C, H, W] -> [B*F*stride, C, H, W]: a 1x1 convolution to ``stride * C`` channels, split into frames."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bf, c, h, w = x.shape
        return self.proj(x).reshape(bf, self.stride, c, h, w).reshape(bf * self.stride, c, h, w)


class TinyDecoder(ModelMixin, ConfigMixin):
    """Scaled latents [B, C, F, h, w] -> frames [B, F', 3, H, W] in [-1, 1] (see the module docstring).

    ``channels[i]``: the width at resolution level ``i`` (level 0 at the latents' size, each next level 2x larger),
    ``blocks``: memory blocks per level, ``temporal_upsample[i]``: the frame stride of the step from level ``i`` to
    ``i + 1`` (all 1 for a per-frame autoencoder).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        out_channels: int = 3,
        channels: tuple[int, ...] = (64, 64, 64, 64),
        blocks: int = 1,
        memory: bool = True,
        temporal_upsample: tuple[int, ...] | None = None,
        causal_first_frame: bool = False,
        latent_clamp: float = 6.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        levels = len(channels)
        stride = tuple(int(s) for s in (temporal_upsample or (1,) * (levels - 1)))
        if levels < 1 or len(stride) != levels - 1 or min(channels) < 1 or min(stride, default=1) < 1 or blocks < 1:
            raise ValueError(f"TinyDecoder: need channels >= 1 per level, blocks >= 1 and one temporal stride >= 1 per upsampling "
                             f"step; got channels {channels}, blocks {blocks}, temporal_upsample {stride}")
        self.conv_in = _conv(latent_channels, channels[0])
        self.levels = nn.ModuleList()
        for i, ch in enumerate(channels):
            level = nn.ModuleDict({"blocks": nn.ModuleList([MemoryBlock(ch, memory) for _ in range(blocks)])})
            if i < levels - 1:
                if stride[i] > 1:
                    level["temporal"] = TemporalUpsample(ch, stride[i])
                level["up"] = _conv(ch, channels[i + 1], bias=False)
            self.levels.append(level)
        self.conv_out = _conv(channels[-1], out_channels)

    # ------------------------------------------------------------------ geometry

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    @property
    def temporal_factor(self) -> int:
        return math.prod(self.config.temporal_upsample or (1,))

    def output_frames(self, latent_frames: int) -> int:
        t = self.temporal_factor
        return latent_frames * t - (t - 1 if self.config.causal_first_frame else 0)

    # ------------------------------------------------------------------ forward

    def frames_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        """The decoder's output before the final clamp, [B, F', 3, H, W] (what training compares: a clamp has no
        gradient outside [-1, 1])."""
        b, c, f, h, w = latents.shape
        z = latents  # the scaled latents: about unit variance, the space the denoiser works in
        if self.config.latent_clamp > 0:  # a soft clamp: near identity within a few std, bounded beyond
            z = torch.tanh(z / self.config.latent_clamp) * self.config.latent_clamp
        x = F.relu(self.conv_in(z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)))
        frames = f
        for level in self.levels:
            for block in level["blocks"]:
                x = block(x, frames)
            if "up" in level:
                if "temporal" in level:
                    x = level["temporal"](x)
                    frames *= level["temporal"].stride
                x = level["up"](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.conv_out(F.relu(x))
        out = x.reshape(b, frames, *x.shape[1:])
        if self.config.causal_first_frame and self.temporal_factor > 1:
            out = out[:, self.temporal_factor - 1 :]
        return out

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.frames_unclamped(latents).clamp(-1.0, 1.0)

    @classmethod
    def for_autoencoder_kl(cls, vae_config: dict[str, Any], channels: tuple[int, ...] | None = None, width: int = 64, **kw: Any) -> TinyDecoder:
        """A tiny decoder for a per-frame ``AutoencoderKL``: its latent channels, scaling and spatial factor
        (``len(block_out_channels) - 1`` doublings). Unless ``channels`` is given, ``width`` channels at the latents'
        size, halved at each larger level down to 16 (``tapered_channels``): most of a decoder's cost is at the
        largest sizes, where flat colours and edges need the fewest channels."""
        levels = len(vae_config["block_out_channels"])
        channels = tuple(channels) if channels else tapered_channels(width, levels)
        if len(channels) != levels:
            raise ValueError(f"this autoencoder upsamples {levels - 1} times, so the tiny decoder needs {levels} channel widths, got {channels}")
        return cls(latent_channels=int(vae_config["latent_channels"]), out_channels=int(vae_config.get("out_channels", 3)),
                   channels=channels, **kw)

    @classmethod
    def for_autoencoder_wan(cls, vae_config: dict[str, Any], channels: tuple[int, ...] | None = None, width: int = 64, **kw: Any) -> TinyDecoder:
        """A tiny decoder for a causal ``AutoencoderKLWan``: ``z_dim`` latent channels, one spatial doubling per entry of
        ``temperal_downsample`` and a temporal stride of 2 wherever the encoder halved time, taken in the decoder's order
        (the encoder's reversed), first frame alone (latent frame 0 -> 1 frame, each later one -> 4 for Wan2.1)."""
        down = [bool(d) for d in vae_config.get("temperal_downsample", [False, True, True])]
        if vae_config.get("patch_size"):
            raise ValueError("this autoencoder folds a pixel patch into its channels (Wan2.2's); the tiny decoder handles Wan2.1's")
        levels = len(down) + 1
        channels = tuple(channels) if channels else tapered_channels(width, levels)
        if len(channels) != levels:
            raise ValueError(f"this autoencoder upsamples {levels - 1} times, so the tiny decoder needs {levels} channel widths, got {channels}")
        return cls(latent_channels=int(vae_config.get("z_dim", 16)), out_channels=3, channels=channels,
                   temporal_upsample=tuple(2 if d else 1 for d in reversed(down)), causal_first_frame=True, **kw)


def tapered_channels(width: int, levels: int, floor: int = 16) -> tuple[int, ...]:
    """``width`` at level 0, halved per level, never under ``min(floor, width)``: (64, 32, 16), (128, 64, 32, 16)."""
    return tuple(max(min(floor, width), width >> i) for i in range(levels))


def load_tiny_decoder(model_dir: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> TinyDecoder:
    """The tiny decoder of a model directory (``decoder train``'s output), refused in one line where there is none."""
    folder = Path(model_dir) / TINY_FOLDER
    if not (folder / TinyDecoder.config_name).is_file():
        raise FileNotFoundError(f"{model_dir} has no tiny decoder ({TINY_FOLDER}/): make one with "
                                f"`turbo-edge decoder train --model {model_dir} --out RUN`")
    return TinyDecoder.from_pretrained(folder, use_safetensors=True, torch_dtype=dtype).eval().requires_grad_(False)


def load_decoder_variant(model_dir: str | os.PathLike[str], name: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module | None:
    """The decoder ``name`` of a model directory (or a builtin alias): None for ``"full"`` (the VAE's own), else the
    variant its card names, refused in one line naming the decoders it has."""
    from turbo_edge.core.pipeline_io import resolve_model_path
    from turbo_edge.spec.card import read_card

    if name == "full":
        return None
    given, model_dir = model_dir, resolve_model_path(model_dir)
    variants = read_card(model_dir).decoders
    if name not in variants:
        variant = " --variant pruned" if name == "pruned" else ""
        raise ValueError(f"{given} has no {name!r} decoder; it has {['full', *sorted(variants)]} "
                         f"(add one with `turbo-edge decoder train --model {given}{variant}`)")
    from turbo_edge.core.pruned_decoder import PrunedDecoder
    from turbo_edge.core.pruned_wan_decoder import PrunedWanDecoder

    variant = variants[name]
    classes = {c.__name__: c for c in (TinyDecoder, PrunedDecoder, PrunedWanDecoder)}
    if variant.cls not in classes:
        raise ValueError(f"{model_dir}'s {name!r} decoder is a {variant.cls}, which this build does not load (it loads {sorted(classes)})")
    folder = Path(model_dir) / variant.folder
    return classes[variant.cls].from_pretrained(folder, use_safetensors=True, torch_dtype=dtype).eval().requires_grad_(False)


# ------------------------------------------------------------------ the full decoder, as the trainer sees it


class AutoencoderKLTarget:
    """A per-frame diffusers ``AutoencoderKL`` (frozen): target frames from scaled latents, and its encoder's
    per-block features of frames (the perceptual term: the model's own encoder, never the held-out evaluator)."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.get("shift_factor") or 0.0)

    @torch.no_grad()
    def frames(self, latents: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Scaled latents [B, C, F, h, w] -> the full decoder's frames [B, F, 3, H, W], clamped to [-1, 1] as users see them."""
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / self.scaling_factor + self.shift_factor
        images = torch.cat([self.vae.decode(part).sample for part in flat.split(chunk)])
        return images.clamp(-1, 1).reshape(b, f, *images.shape[1:])

    def features(self, frames: torch.Tensor, layers: int | None = None) -> list[torch.Tensor]:
        """Frames [B, F, 3, H, W] -> the encoder's conv_in and down-block outputs (gradients flow to ``frames``)."""
        enc = self.vae.encoder
        x = enc.conv_in(frames.flatten(0, 1))
        out = [x]
        for block in enc.down_blocks[: layers if layers is not None else len(enc.down_blocks)]:
            x = block(x)
            out.append(x)
        return out


class AutoencoderKLWanTarget:
    """A causal diffusers ``AutoencoderKLWan`` (frozen): target frames of the whole clip from normalised latents
    (``latents_mean`` / ``latents_std`` undone, as ``core.autoencoders.CausalWan``), and its encoder's features of frames
    for the perceptual term: ``conv_in`` and each down block run over the whole clip without the causal cache (full
    clips, so the cache is not needed; its temporal resamples then keep every frame)."""

    def __init__(self, vae: nn.Module) -> None:
        from turbo_edge.core.autoencoders import CausalWan

        self.vae = vae.eval().requires_grad_(False)
        self.codec = CausalWan()

    @torch.no_grad()
    def frames(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, f, h, w] -> the full decoder's frames [B, 1 + 4(f - 1), 3, H, W], clamped to [-1, 1]."""
        return self.codec.decode_pixels(self.vae, latents).clamp(-1, 1)

    def features(self, frames: torch.Tensor, layers: int | None = None) -> list[torch.Tensor]:
        """Frames [B, F, 3, H, W] -> the encoder's conv_in and down-block outputs, as [B*F, C, H, W] maps."""
        enc = self.vae.encoder
        x = enc.conv_in(frames.permute(0, 2, 1, 3, 4))
        out = [x]
        for block in enc.down_blocks[: layers if layers is not None else len(enc.down_blocks)]:
            x = block(x)
            out.append(x)
        return [f.permute(0, 2, 1, 3, 4).flatten(0, 1) for f in out]


def full_decoder_target(vae: nn.Module) -> AutoencoderKLTarget | AutoencoderKLWanTarget:
    """The trainer's view of a model's full decoder, by the autoencoder's class."""
    name = type(vae).__name__
    if name == "AutoencoderKLWan":
        return AutoencoderKLWanTarget(vae)
    if name == "AutoencoderKL":
        return AutoencoderKLTarget(vae)
    raise ValueError(f"no tiny-decoder target for a {name}: decoder train handles AutoencoderKL and AutoencoderKLWan")


def perceptual_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-style: per layer, features unit-normalised over channels at each position, squared difference averaged
    over positions and channels; the mean over layers."""
    terms = []
    for fa, fb in zip(a, b, strict=True):
        na = fa / (fa.norm(dim=1, keepdim=True) + 1e-6)
        nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-6)
        terms.append((na - nb).pow(2).sum(dim=1).mean())
    return torch.stack(terms).mean()


class PatchDiscriminator(nn.Module):
    """A small per-frame patch discriminator (hinge loss): strided convs with LeakyReLU, one logit per patch."""

    def __init__(self, width: int = 32, in_channels: int = 3, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        cin = in_channels
        for i in range(layers):
            cout = width * 2 ** min(i, 2)
            mods += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(cin, cout, 4, 2 if i < layers - 1 else 1, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        mods.append(nn.Conv2d(cin, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.flatten(0, 1))


# ------------------------------------------------------------------ quality of a decoder's frames against the full one's


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of frames in [-1, 1] (peak-to-peak 2), over all values."""
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03) of frames [..., C, H, W]
    in [-1, 1], per channel, valid windows only (the window shrinks to the frame where a frame is smaller)."""
    x = ((a.double() + 1) / 2).flatten(0, -4)
    y = ((b.double() + 1) / 2).flatten(0, -4)
    n, c, h, w = x.shape
    win = min(window, h, w)
    g = torch.exp(-((torch.arange(win, dtype=torch.float64) - (win - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, win, win).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def frame_quality(tiny: TinyDecoder, target: AutoencoderKLTarget, latents: torch.Tensor, batch: int = 8) -> dict[str, float]:
    """PSNR / SSIM of the tiny decoder's frames against the full decoder's on ``latents`` [N, C, F, h, w]."""
    outs, refs = [], []
    with torch.no_grad():
        for part in latents.split(batch):
            outs.append(tiny(part))
            refs.append(target.frames(part))
    out, ref = torch.cat(outs), torch.cat(refs)
    return {"psnr_db": psnr(out, ref), "ssim": ssim(out, ref), "clips": int(len(latents)), "frames": int(np.prod(out.shape[:2]))}
