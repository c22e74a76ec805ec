"""The tiny teacher's architecture, and building its components from configs.

Component configs are plain dicts in the diffusers / transformers vocabulary, so the same code paths
(``from_pretrained`` on a diffusers text-to-video directory) serve the builtin teacher and real ones.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from turbo_edge.core import world

# A key turbo-edge adds to a UNet3DConditionModel's config.json (diffusers keeps unknown keys in ``config`` and
# warns that it ignores them): "sinusoidal" gives every temporal transformer block a fixed sinusoidal
# frame-position embedding, as AnimateDiff's motion modules have. diffusers' UNet3DConditionModel has none: its
# temporal attention is permutation-equivariant over frames, so the only frame-order signal is the temporal
# convolutions' zero padding. The builtin teacher without it learned to move objects coherently but in
# directions unrelated to the prompt ("staying still" bound perfectly, left/right/up/down at chance after
# 3,750 steps): a direction is a frame-dependent position, which needs to know the frame.
TEMPORAL_POSITION_KEY = "turbo_edge_temporal_position"
TEMPORAL_POSITION_KINDS = ("sinusoidal",)
MAX_FRAMES = 64


@dataclass(frozen=True)
class TinyTeacherSpec:
    """Sizes of the builtin teacher: 32x32 RGB clips of 8 frames -> 8x8x4 latents (VAE factor 4)."""

    frames: int = 8
    size: int = 32
    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (32, 64, 64)
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_heads: int = 4  # diffusers' ``attention_head_dim`` is really the number of heads
    text_hidden: int = 64
    text_layers: int = 2
    max_length: int = 16
    words: list[str] = field(default_factory=world.vocabulary)

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.vae_channels) - 1)

    def vae_config(self) -> dict[str, Any]:
        n = len(self.vae_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * n,
            "up_block_types": ["UpDecoderBlock2D"] * n,
            "block_out_channels": list(self.vae_channels),
            "layers_per_block": 1,
            "latent_channels": self.latent_channels,
            "norm_num_groups": 16,
            "sample_size": self.size,
            "scaling_factor": 1.0,  # set from data after the autoencoder is trained
        }

    def unet_config(self) -> dict[str, Any]:
        return {
            "sample_size": self.latent_size,
            "in_channels": self.latent_channels,
            "out_channels": self.latent_channels,
            "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
            "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
            "block_out_channels": list(self.unet_channels),
            "layers_per_block": 2,
            "norm_num_groups": 8,
            "cross_attention_dim": self.text_hidden,
            "attention_head_dim": self.unet_heads,
            TEMPORAL_POSITION_KEY: "sinusoidal",
        }

    def text_config(self, vocab_size: int) -> dict[str, Any]:
        return {
            "vocab_size": vocab_size,
            "hidden_size": self.text_hidden,
            "intermediate_size": self.text_hidden * 2,
            "num_hidden_layers": self.text_layers,
            "num_attention_heads": 2,
            "max_position_embeddings": self.max_length,
            "projection_dim": self.text_hidden,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        }

    def scheduler_config(self) -> dict[str, Any]:
        # Cosine betas suit tiny latents (a linear schedule leaves 8x8 content visible at t=999);
        # trailing spacing makes 50-step DDIM start at t=999, where the cosine schedule's SNR is ~0.
        return {
            "num_train_timesteps": 1000,
            "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction",
            "timestep_spacing": "trailing",
            "clip_sample": False,
            "set_alpha_to_one": True,
            "steps_offset": 0,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_vae(spec: TinyTeacherSpec):  # -> AutoencoderKL
    from diffusers import AutoencoderKL

    return AutoencoderKL(**spec.vae_config())


def attach_temporal_position(unet: Any) -> Any:
    """Give ``unet``'s temporal transformer blocks the frame-position embedding its config names (if any), in place.

    The embedding is parameter-free (a non-persistent buffer), so weights and state dicts are unchanged and
    a checkpoint loads into the model with or without it; the config key decides. Idempotent.
    """
    kind = unet.config.get(TEMPORAL_POSITION_KEY)
    if kind is None:
        return unet
    if kind not in TEMPORAL_POSITION_KINDS:
        raise ValueError(f"unknown {TEMPORAL_POSITION_KEY} {kind!r} in the UNet config; this build knows {list(TEMPORAL_POSITION_KINDS)}")
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    for module in unet.modules():
        if not isinstance(module, TransformerTemporalModel):
            continue
        for block in module.transformer_blocks:
            if block.pos_embed is None:
                pos = SinusoidalPositionalEmbedding(block.norm1.normalized_shape[0], max_seq_length=MAX_FRAMES)
                pos.register_buffer("pe", pos.pe, persistent=False)  # fixed: not a weight, not in safetensors
                ref = next(block.parameters())
                block.pos_embed = pos.to(device=ref.device, dtype=ref.dtype)
    return unet


@contextlib.contextmanager
def own_config_keys_quiet() -> Iterator[None]:
    """Silence diffusers' "config attributes ... will be ignored" warning about turbo-edge's own keys.

    ``attach_temporal_position`` applies them after construction, so the warning would be wrong.
    """
    logger = logging.getLogger("diffusers.configuration_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def unet_from_config(config: dict[str, Any]):  # -> UNet3DConditionModel
    """A freshly initialised UNet3DConditionModel for ``config``, turbo-edge's config keys applied."""
    from diffusers import UNet3DConditionModel

    with own_config_keys_quiet():
        unet = UNet3DConditionModel.from_config(config)
    return attach_temporal_position(unet)


def build_unet(spec: TinyTeacherSpec):  # -> UNet3DConditionModel
    return unet_from_config(spec.unet_config())


def build_text_encoder(spec: TinyTeacherSpec, vocab_size: int):  # -> CLIPTextModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**spec.text_config(vocab_size)))


def build_scheduler(spec: TinyTeacherSpec):  # -> DDIMScheduler
    from diffusers import DDIMScheduler

    return DDIMScheduler(**spec.scheduler_config())
