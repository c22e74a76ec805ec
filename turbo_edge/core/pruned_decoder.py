"""A VDMini-pruned VAE decoder in diffusers form: the model's own ``AutoencoderKL`` decoder with layers removed and
internal widths narrowed, rebuilt from its config (``turbo-edge decoder train --variant pruned``).

``PrunedDecoder``'s config *is* its replayable plan: the autoencoder's config, the units removed and the internal
width kept in each narrowed resnet. ``__init__`` builds diffusers' ``Decoder`` (+ ``post_quant_conv``), replaces
every removed unit by a parameter-free skip and narrows each listed resnet's ``conv1 -> norm2 -> conv2`` width, so
``from_pretrained`` rebuilds exactly the module whose weights were saved. ``from_vae`` makes one from a full
autoencoder's weights: the same surgery on the loaded decoder, keeping the named channels.

Removable units: each resnet of the mid block and of the up blocks whose input and output widths agree (the
first resnet of an up block may change the width), and the mid block's attention. Channels are pruned in whole
groups of ``norm2`` (so the kept groups' statistics, and outputs before fine-tuning, are the unpruned ones') by
the L2 norm of ``conv1``'s filters, through torch-pruning's dependency graph (``prune_channels``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from turbo_edge.core.decoder_surgery import plain, skip_units

PRUNED_FOLDER = "pruned_vae"
PRUNED_NAME = "pruned"
VAE_KEYS = ("in_channels", "out_channels", "up_block_types", "block_out_channels", "layers_per_block", "norm_num_groups", "act_fn",
            "mid_block_add_attention", "latent_channels", "use_post_quant_conv", "scaling_factor", "shift_factor")


def removable_units(decoder: nn.Module) -> list[str]:
    """The units a plan may name, in execution order (see the module docstring)."""
    units = []
    mid = decoder.mid_block
    for i in range(len(mid.resnets)):
        units.append(f"mid_block.resnets.{i}")
        if i < len(mid.attentions) and mid.attentions[i] is not None:
            units.append(f"mid_block.attentions.{i}")
    for b, block in enumerate(decoder.up_blocks):
        for j, resnet in enumerate(block.resnets):
            if resnet.in_channels == resnet.out_channels and resnet.conv_shortcut is None:
                units.append(f"up_blocks.{b}.resnets.{j}")
    return units


def resnets(decoder: nn.Module) -> dict[str, nn.Module]:
    """Every resnet of the decoder that is still there (not removed), by name."""
    return {name: m for name, m in decoder.named_modules() if type(m).__name__ == "ResnetBlock2D"}


def remove_units(decoder: nn.Module, removed: list[str]) -> None:
    skip_units(decoder, removed, removable_units(decoder))


def narrow_resnet(resnet: nn.Module, keep: torch.Tensor) -> None:
    """Keep channels ``keep`` (whole groups of norm2) of a resnet's internal width: conv1 out, norm2, conv2 in."""
    groups, width = resnet.norm2.num_groups, resnet.norm2.num_channels
    per_group = width // groups
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    if len(keep) % per_group or len(keep) == 0:
        raise ValueError(f"a resnet keeps whole groups of {per_group} channels, got {len(keep)}")
    with torch.no_grad():
        c1 = resnet.conv1
        new1 = nn.Conv2d(c1.in_channels, len(keep), c1.kernel_size, c1.stride, c1.padding, bias=c1.bias is not None)
        new1.weight.copy_(c1.weight[keep])
        if c1.bias is not None:
            new1.bias.copy_(c1.bias[keep])
        n2 = resnet.norm2
        newn = nn.GroupNorm(len(keep) // per_group, len(keep), eps=n2.eps, affine=n2.affine)
        if n2.affine:
            newn.weight.copy_(n2.weight[keep])
            newn.bias.copy_(n2.bias[keep])
        c2 = resnet.conv2
        new2 = nn.Conv2d(len(keep), c2.out_channels, c2.kernel_size, c2.stride, c2.padding, bias=c2.bias is not None)
        new2.weight.copy_(c2.weight[:, keep])
        if c2.bias is not None:
            new2.bias.copy_(c2.bias)
    resnet.conv1, resnet.norm2, resnet.conv2 = new1, newn, new2


def prune_channels(decoder: nn.Module, ratio: float, example: torch.Tensor) -> dict[str, list[int]]:
    """Choose, for every remaining resnet, the ``ratio`` of its internal norm groups with the smallest conv1 filter
    L2 norm and remove them through torch-pruning's dependency graph (conv1 out -> norm2 -> conv2 in); returns the
    kept channel indices per resnet. ``example``: one input of ``decoder`` (its graph is traced on it)."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(decoder, example_inputs=example)
    kept: dict[str, list[int]] = {}
    for name, resnet in resnets(decoder).items():
        groups, width = resnet.norm2.num_groups, resnet.norm2.num_channels
        per_group, drop = width // groups, int(round(groups * ratio))
        if drop == 0:
            continue
        drop = min(drop, groups - 1)
        score = resnet.conv1.weight.detach().flatten(1).pow(2).sum(1).reshape(groups, per_group).sum(1)
        gone = score.argsort()[:drop]
        idxs = sorted(int(g) * per_group + k for g in gone for k in range(per_group))
        group = graph.get_pruning_group(resnet.conv1, tp.prune_conv_out_channels, idxs=idxs)
        if not graph.check_pruning_group(group):
            raise ValueError(f"torch-pruning refuses to prune {name}'s internal width")
        group.prune()
        resnet.norm2.num_groups = groups - drop  # torch-pruning keeps num_groups; whole groups went
        kept[name] = sorted(set(range(width)) - set(idxs))
    return kept


class PrunedDecoder(ModelMixin, ConfigMixin):
    """Scaled latents [B, C, F, h, w] -> frames [B, F, 3, H, W] in [-1, 1], through the pruned full decoder."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, vae_config: dict[str, Any] | None = None, removed: list[str] | None = None, widths: dict[str, int] | None = None) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        v = dict(vae_config or {})
        self.decoder = Decoder(in_channels=v.get("latent_channels", 4), out_channels=v.get("out_channels", 3),
                               up_block_types=tuple(v.get("up_block_types", ("UpDecoderBlock2D",))),
                               block_out_channels=tuple(v.get("block_out_channels", (64,))), layers_per_block=v.get("layers_per_block", 2),
                               norm_num_groups=v.get("norm_num_groups", 32), act_fn=v.get("act_fn", "silu"),
                               mid_block_add_attention=v.get("mid_block_add_attention", True))
        c = v.get("latent_channels", 4)
        self.post_quant_conv = nn.Conv2d(c, c, 1) if v.get("use_post_quant_conv", True) else None
        remove_units(self.decoder, list(removed or []))
        for name, width in (widths or {}).items():
            narrow_resnet(self.decoder.get_submodule(name), torch.arange(int(width)))

    @classmethod
    def from_vae(cls, vae: nn.Module, removed: list[str] | None = None) -> PrunedDecoder:
        """The full autoencoder's decoder with ``removed`` units gone (weights copied; widths unchanged)."""
        config = {k: plain(vae.config.get(k)) for k in VAE_KEYS}
        out = cls(vae_config=config)
        out.decoder.load_state_dict(vae.decoder.state_dict())
        if out.post_quant_conv is not None:
            out.post_quant_conv.load_state_dict(vae.post_quant_conv.state_dict())
        remove_units(out.decoder, list(removed or []))
        out.register_to_config(removed=list(removed or []))
        return out

    def prune_channels(self, ratio: float, latent_hw: tuple[int, int]) -> dict[str, int]:
        """Narrow every remaining resnet by ``ratio`` of its norm groups (``prune_channels``); records the widths."""
        c = self.config.vae_config.get("latent_channels", 4)
        kept = prune_channels(self.decoder, ratio, torch.zeros(1, c, *latent_hw))
        widths = {**dict(self.config.widths or {}), **{k: len(v) for k, v in kept.items()}}
        self.register_to_config(widths=widths)
        return widths

    # The surgery a plan names, for ``decoder train`` (the Wan decoder's class has the same four).
    removable_units = staticmethod(removable_units)
    remove_units = staticmethod(remove_units)
    narrow = staticmethod(narrow_resnet)

    def choose_channels(self, ratio: float, latents: torch.Tensor) -> dict[str, list[int]]:
        """``prune_channels`` on this decoder, traced on one frame of ``latents`` [N, C, F, h, w]; the kept indices."""
        return prune_channels(self.decoder, ratio, torch.zeros(1, latents.shape[1], *latents.shape[3:]))

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        v = self.config.vae_config
        return latents / float(v.get("scaling_factor") or 1.0) + float(v.get("shift_factor") or 0.0)

    def frames_unclamped(self, latents: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        flat = self.unscale(latents).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        out = []
        # Exported, the whole batch is one call: a traced split would bake the export's sizes into the graph.
        for part in [flat] if torch.onnx.is_in_onnx_export() else flat.split(chunk):
            z = self.post_quant_conv(part) if self.post_quant_conv is not None else part
            out.append(self.decoder(z))
        images = torch.cat(out)
        return images.reshape(b, f, *images.shape[1:])

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.frames_unclamped(latents).clamp(-1.0, 1.0)


def pruned_class(vae: nn.Module) -> type:
    """The pruned-decoder class of an autoencoder: ``PrunedDecoder`` (per-frame ``AutoencoderKL``) or
    ``core.pruned_wan_decoder.PrunedWanDecoder`` (causal ``AutoencoderKLWan``)."""
    if type(vae).__name__ == "AutoencoderKLWan":
        from turbo_edge.core.pruned_wan_decoder import PrunedWanDecoder

        return PrunedWanDecoder
    return PrunedDecoder


def measure_importance(vae: nn.Module, latents: torch.Tensor) -> list[dict[str, Any]]:
    """Per removable unit: the MSE of the full decoder's frames with that unit alone removed against the intact
    decoder's frames on ``latents`` [N, C, F, h, w], and its parameter count; sorted by damage, least first."""
    cls = pruned_class(vae)
    base = cls.from_vae(vae).eval()
    with torch.no_grad():
        ref = base(latents)
        rows = []
        for unit in cls.removable_units(base.decoder):
            trial = copy.deepcopy(base)
            cls.remove_units(trial.decoder, [unit])
            mse = (trial(latents) - ref).pow(2).mean().item()
            rows.append({"unit": unit, "mse": mse, "params": sum(p.numel() for p in base.decoder.get_submodule(unit).parameters())})
    return sorted(rows, key=lambda r: r["mse"])
