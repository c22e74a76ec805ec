"""The builtin DiT world model's architecture: Wan2.1's components at the synthetic world's size.

Wan2.1-T2V (diffusers ``WanPipeline``) is a ``WanTransformer3DModel`` (patchified tokens, joint 3D RoPE,
self- and cross-attention blocks with adaLN), the causal 3D ``AutoencoderKLWan`` (4x in time, the first frame
encoded alone), a UMT5 text encoder whose embeddings are zeroed past each prompt's length, and flow matching
(velocity prediction, shifted sigmas). ``TinyWanSpec`` keeps every one of those parts and scales the sizes to the
world's 32x32 clips: 9 frames (1 + 4k, what the causal autoencoder takes) -> 3 x 8 x 8 latents of 8 channels
(spatial factor 4: two down stages instead of Wan's three, so the 2x2 patches still give 16 tokens a frame).

The world's clips are 8 frames; a DiT clip renders one lead-in frame before them (``WorldConfig.lead_in``),
continuing the motion backwards, so frames 1..8 are exactly the 8-frame clip the held-out evaluator was trained
on, and the evaluator reads those (``evaluate``: the card's ``lead_in_frames``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from turbo_edge.core import world

# T5's special pieces, in T5's order (pad 0, eos 1, unk 2); SentencePiece marks a word start with U+2581.
T5_SPECIALS = ("<pad>", "</s>", "<unk>")
WORD_START = "\u2581"


@dataclass(frozen=True)
class TinyWanSpec:
    """Sizes of the builtin DiT teacher (``builtin-dit``)."""

    frames: int = 9  # 1 + 4k: the causal autoencoder's first frame plus two groups of four
    size: int = 32
    lead_in: int = 1  # frames rendered before the world's 8-frame clip (the evaluator skips them)
    z_dim: int = 8
    vae_base_dim: int = 32
    vae_dim_mult: tuple[int, ...] = (1, 2, 2)
    vae_temporal_downsample: tuple[bool, ...] = (True, True)
    heads: int = 4
    head_dim: int = 32
    layers: int = 8
    ffn: int = 512
    freq_dim: int = 64
    patch: tuple[int, int, int] = (1, 2, 2)
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    max_length: int = 16
    flow_shift: float = 3.0
    words: list[str] = field(default_factory=world.vocabulary)

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.vae_temporal_downsample)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.vae_temporal_downsample)

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.temporal_factor + 1

    @property
    def latent_size(self) -> int:
        return self.size // self.spatial_factor

    def vae_config(self) -> dict[str, Any]:
        return {
            "base_dim": self.vae_base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.vae_dim_mult),
            "num_res_blocks": 1,
            "attn_scales": [],
            "temperal_downsample": list(self.vae_temporal_downsample),  # diffusers' spelling
            "dropout": 0.0,
            # Measured on training clips after the autoencoder is trained (``measure_latent_stats``).
            "latents_mean": [0.0] * self.z_dim,
            "latents_std": [1.0] * self.z_dim,
            "scale_factor_temporal": self.temporal_factor,
            "scale_factor_spatial": self.spatial_factor,
        }

    def transformer_config(self) -> dict[str, Any]:
        return {
            "patch_size": list(self.patch),
            "num_attention_heads": self.heads,
            "attention_head_dim": self.head_dim,
            "in_channels": self.z_dim,
            "out_channels": self.z_dim,
            "text_dim": self.text_hidden,
            "freq_dim": self.freq_dim,
            "ffn_dim": self.ffn,
            "num_layers": self.layers,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 1024,
        }

    def text_config(self, vocab_size: int) -> dict[str, Any]:
        return {
            "vocab_size": vocab_size,
            "d_model": self.text_hidden,
            "d_kv": self.text_hidden // self.text_heads,
            "d_ff": self.text_hidden * 2,
            "num_layers": self.text_layers,
            "num_heads": self.text_heads,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 16,
            "dropout_rate": 0.0,
            "feed_forward_proj": "gated-gelu",
            "is_encoder_decoder": False,
            "pad_token_id": 0,
            "eos_token_id": 1,
        }

    def scheduler_config(self) -> dict[str, Any]:
        return {"num_train_timesteps": 1000, "shift": self.flow_shift, "use_dynamic_shifting": False}

    def world_config(self) -> world.WorldConfig:
        return world.WorldConfig(frames=self.frames - self.lead_in, size=self.size, lead_in=self.lead_in)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unigram_vocab(words: list[str]) -> list[tuple[str, float]]:
    """A T5-style Unigram vocabulary: the three specials, one piece per world word (``▁word``), then the word-start
    marker and every lowercase letter and digit, so any text still tokenizes (into letters) and a word outside the
    vocabulary is seen as several pieces instead of vanishing into ``<unk>``."""
    pieces: list[tuple[str, float]] = [(s, 0.0) for s in T5_SPECIALS]
    pieces += [(WORD_START + w.lower(), -2.0) for w in words]
    pieces += [(WORD_START, -5.0)] + [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return pieces


def build_tokenizer(spec: TinyWanSpec):  # -> transformers.T5Tokenizer (tokenizers' Unigram model)
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=unigram_vocab(spec.words), extra_ids=0, model_max_length=spec.max_length)


def build_vae(spec: TinyWanSpec):  # -> AutoencoderKLWan
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(**spec.vae_config())


def build_transformer(spec: TinyWanSpec):  # -> WanTransformer3DModel
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**spec.transformer_config())


def build_text_encoder(spec: TinyWanSpec, vocab_size: int):  # -> UMT5EncoderModel
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(**spec.text_config(vocab_size)))


def build_scheduler(spec: TinyWanSpec):  # -> FlowMatchEulerDiscreteScheduler
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**spec.scheduler_config())
