"""A VDMini-pruned causal Wan decoder in diffusers form: the model's own ``AutoencoderKLWan`` decoder with residual
blocks removed and internal widths narrowed, rebuilt from its config (``turbo-edge decoder train --variant pruned`` on
a DiT-family model).

The per-frame ``AutoencoderKL``'s counterpart is ``core.pruned_decoder.PrunedDecoder`` (which picks between them:
``pruned_class``); this one differs where the
causal autoencoder does:

- The decode is diffusers' own causal loop (``AutoencoderKLWan._decode``'s: ``post_quant_conv``, then one latent frame
  at a time through ``WanDecoder3d`` with its cache of the last frames of every causal convolution). The cache has one
  slot per ``WanCausalConv3d`` *still in the decoder*, counted on every call, so removing a residual block removes its
  two slots and the rest line up.
- It keeps the "clip" layout of every decoder variant of a DiT bundle: the transformer's *normalised* latents
  [B, z, f, h, w] in (``latents_mean`` / ``latents_std`` undone inside, as ``core.autoencoders.CausalWan``), frames
  [B, 1 + 4 (f - 1), 3, H, W] out, so a runtime swaps it for the full decoder with one tensor.
- Removable units: each ``WanResidualBlock`` of the mid block and of the up blocks whose input and output widths agree
  (the first block of an up block may change the width; its shortcut is a 1x1 conv), and the mid block's attention.
- Channels: ``conv1`` out -> ``norm2`` (an RMS norm over channels, ``gamma`` per channel) -> ``conv2`` in, chosen by the
  L2 norm of ``conv1``'s filters and narrowed by explicit surgery (the same one a replayed plan does). torch-pruning,
  which the per-frame decoder's path uses, over-couples here: with the RMS norms' ``gamma`` declared as unwrapped
  parameters, asked to keep 32 of 64 channels in each block it kept 26-31, pruning other blocks' channels with each
  group (diffusers 0.42.1). The RMS norm's ``sqrt(C)`` scale follows the kept width, as a block built at it has.

``PrunedWanDecoder``'s config *is* its replayable plan (autoencoder config, units removed, widths kept).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from turbo_edge.core.decoder_surgery import plain, skip_units

WAN_VAE_KEYS = ("base_dim", "decoder_base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "temperal_downsample", "dropout",
                "latents_mean", "latents_std", "is_residual", "out_channels", "patch_size", "scale_factor_temporal", "scale_factor_spatial")
RESNET = "WanResidualBlock"
CAUSAL_CONV = "WanCausalConv3d"


def wan_removable_units(decoder: nn.Module) -> list[str]:
    """The units a plan may name, in execution order (see the module docstring)."""
    units = []
    mid = decoder.mid_block
    for i in range(len(mid.resnets)):
        units.append(f"mid_block.resnets.{i}")
        if i < len(mid.attentions) and type(mid.attentions[i]).__name__ != "Skip":
            units.append(f"mid_block.attentions.{i}")
    for b, block in enumerate(decoder.up_blocks):
        for j, resnet in enumerate(block.resnets):
            if type(resnet).__name__ == RESNET and resnet.in_dim == resnet.out_dim:
                units.append(f"up_blocks.{b}.resnets.{j}")
    return units


def wan_resnets(decoder: nn.Module) -> dict[str, nn.Module]:
    """Every residual block of the decoder that is still there (not removed), by name."""
    return {name: m for name, m in decoder.named_modules() if type(m).__name__ == RESNET}


def wan_remove_units(decoder: nn.Module, removed: list[str]) -> None:
    skip_units(decoder, removed, wan_removable_units(decoder), what="Wan decoder")


def narrow_wan_resnet(resnet: nn.Module, keep: torch.Tensor) -> None:
    """Keep channels ``keep`` of a Wan residual block's internal width: conv1 out, norm2, conv2 in."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanRMS_norm

    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    if len(keep) == 0:
        raise ValueError("a Wan residual block keeps at least one channel")
    with torch.no_grad():
        c1, c2, n2 = resnet.conv1, resnet.conv2, resnet.norm2
        new1 = WanCausalConv3d(c1.in_channels, len(keep), c1.kernel_size, c1.stride, padding=1)
        new1.weight.copy_(c1.weight[keep])
        new1.bias.copy_(c1.bias[keep])
        newn = WanRMS_norm(len(keep), images=False)
        newn.gamma.copy_(n2.gamma[keep])
        new2 = WanCausalConv3d(len(keep), c2.out_channels, c2.kernel_size, c2.stride, padding=1)
        new2.weight.copy_(c2.weight[:, keep])
        new2.bias.copy_(c2.bias)
    resnet.conv1, resnet.norm2, resnet.conv2 = new1, newn, new2


def wan_prune_channels(decoder: nn.Module, ratio: float, multiple: int = 8) -> dict[str, list[int]]:
    """For every remaining residual block, remove the ``ratio`` of its internal channels with the smallest conv1 filter
    L2 norm (``narrow_wan_resnet``: conv1 out, norm2, conv2 in), the kept width rounded to ``multiple`` (at least
    ``multiple``; single channels in a block narrower than twice that); returns the kept channel indices per block."""
    kept: dict[str, list[int]] = {}
    for name, resnet in wan_resnets(decoder).items():
        width = resnet.conv1.out_channels
        step = multiple if width >= 2 * multiple else 1  # a block narrower than that (a test model's) by single channels
        keep_n = max(step, int(round(width * (1.0 - ratio) / step)) * step)
        if keep_n >= width:
            continue
        score = resnet.conv1.weight.detach().flatten(1).pow(2).sum(1)
        keep = sorted(int(i) for i in score.argsort(descending=True)[:keep_n])
        narrow_wan_resnet(resnet, torch.tensor(keep))
        kept[name] = keep
    return kept


class PrunedWanDecoder(ModelMixin, ConfigMixin):
    """Normalised latents [B, z, f, h, w] -> frames [B, 1 + t (f - 1), 3, H, W] in [-1, 1], through the pruned causal
    Wan decoder (diffusers' own decode loop and cache)."""

    config_name = "config.json"
    causal = True  # its clip length is unrolled in an exported graph (no cache inputs)

    @register_to_config
    def __init__(self, vae_config: dict[str, Any] | None = None, removed: list[str] | None = None, widths: dict[str, int] | None = None) -> None:
        super().__init__()
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanDecoder3d

        v = dict(vae_config or {})
        down = list(v.get("temperal_downsample", [False, True, True]))
        z = int(v.get("z_dim", 16))
        self.decoder = WanDecoder3d(dim=v.get("decoder_base_dim") or v.get("base_dim", 96), z_dim=z, dim_mult=list(v.get("dim_mult", [1, 2, 4, 4])),
                                    num_res_blocks=v.get("num_res_blocks", 2), attn_scales=list(v.get("attn_scales", [])),
                                    temperal_upsample=down[::-1], dropout=v.get("dropout", 0.0), out_channels=v.get("out_channels", 3),
                                    is_residual=bool(v.get("is_residual", False)))
        self.post_quant_conv = WanCausalConv3d(z, z, 1)
        wan_remove_units(self.decoder, list(removed or []))
        for name, width in (widths or {}).items():
            narrow_wan_resnet(self.decoder.get_submodule(name), torch.arange(int(width)))

    # The surgery a plan names, for ``decoder train`` (``PrunedDecoder`` has the same four).
    removable_units = staticmethod(wan_removable_units)
    remove_units = staticmethod(wan_remove_units)
    narrow = staticmethod(narrow_wan_resnet)

    def choose_channels(self, ratio: float, latents: torch.Tensor | None = None) -> dict[str, list[int]]:
        """``wan_prune_channels`` on this decoder (by weights alone); the kept indices."""
        return wan_prune_channels(self.decoder, ratio)

    @classmethod
    def from_vae(cls, vae: nn.Module, removed: list[str] | None = None) -> PrunedWanDecoder:
        """The full autoencoder's decoder with ``removed`` units gone (weights copied; widths unchanged)."""
        config = {k: plain(vae.config.get(k)) for k in WAN_VAE_KEYS}
        out = cls(vae_config=config)
        out.decoder.load_state_dict(vae.decoder.state_dict())
        out.post_quant_conv.load_state_dict(vae.post_quant_conv.state_dict())
        wan_remove_units(out.decoder, list(removed or []))
        out.register_to_config(removed=list(removed or []))
        return out

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(d) for d in self.config.vae_config.get("temperal_downsample", [False, True, True]))

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        v = self.config.vae_config
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(v["latents_mean"], dtype=latents.dtype, device=latents.device).view(shape)
        std = torch.tensor(v["latents_std"], dtype=latents.dtype, device=latents.device).view(shape)
        return latents * std + mean

    def frames_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.post_quant_conv(self.denormalise(latents))
        cache: list[Any] = [None] * sum(type(m).__name__ == CAUSAL_CONV for m in self.decoder.modules())
        out = []
        for i in range(x.shape[2]):  # AutoencoderKLWan._decode's loop; unrolled in an exported graph
            out.append(self.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0], first_chunk=i == 0))
        video = torch.cat(out, dim=2)
        patch = self.config.vae_config.get("patch_size")
        if patch:  # Wan2.2's autoencoder: pixels folded into channels
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            video = unpatchify(video, patch_size=patch)
        return video.permute(0, 2, 1, 3, 4)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.frames_unclamped(latents).clamp(-1.0, 1.0)
