"""Tiny seeded models in diffusers layout and UNet call helpers, shared by the torch-side tests."""

from __future__ import annotations

from pathlib import Path

import torch

from turbo_edge.core.models import TinyTeacherSpec
from turbo_edge.spec.card import ModelCard


def build_random_t2v(out: Path, spec: TinyTeacherSpec, card: ModelCard | None = None, seed: int = 0) -> Path:
    """A randomly initialised text-to-video model of ``spec`` saved in diffusers layout (safetensors)."""
    from transformers import CLIPTokenizer

    from turbo_edge.core.models import build_scheduler, build_text_encoder, build_unet, build_vae
    from turbo_edge.core.pipeline_io import T2VModel, save_model
    from turbo_edge.spec.tokenizer_files import write_tokenizer

    torch.manual_seed(seed)
    tok_dir = write_tokenizer(out.parent / f"{out.name}_tokenizer_src", spec.words, spec.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    model = T2VModel(build_unet(spec), build_vae(spec), build_text_encoder(spec, len(tokenizer)), tokenizer, build_scheduler(spec))
    return save_model(model, out, card=card)


# A configuration unlike the builtin teacher's: two UNet levels, narrower, 16x16 frames, 4 frames.
SMALL_SPEC = TinyTeacherSpec(
    frames=4, size=16, vae_channels=(16, 16), unet_channels=(16, 32, 32), unet_heads=2, text_hidden=32, text_layers=1,
)


def student_unet_inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (latents, text, w-embedding) for the tiny student's UNet (SMALL_SPEC, 8-dim guidance embedding)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, 4, 8, 8, generator=g), torch.randn(b, 16, 32, generator=g), torch.randn(b, 8, generator=g)


def student_unet_forward(unet: torch.nn.Module, x: torch.Tensor, e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One no-grad call of a student UNet at timesteps 300 / 700."""
    with torch.no_grad():
        return unet(x, torch.tensor([300, 700][: len(x)]), encoder_hidden_states=e, timestep_cond=w).sample


def build_wan_test_pipeline(out: Path, seed: int = 0) -> Path:
    """A ``WanPipeline`` directory with diffusers' own Wan test components (tests/pipelines/wan/test_wan.py: transformer
    2 heads x 12, 2 layers, text_dim 32; AutoencoderKLWan base_dim 3, dim_mult [1, 1, 1, 1], temporal downsample
    [False, True, True]; FlowMatchEulerDiscreteScheduler shift 7), a tiny UMT5 encoder and a Unigram tokenizer saved as
    ``tokenizer.json``, all written with ``save_pretrained``: a configuration turbo-edge did not choose. No card."""
    import json

    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    from turbo_edge.core.wan import unigram_vocab
    from turbo_edge.core.world import vocabulary

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                                        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                                        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    tokenizer = T5Tokenizer(vocab=unigram_vocab(vocabulary() + ["cat", "dog", "running"]), extra_ids=0, model_max_length=24)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                               relative_attention_num_buckets=8, dropout_rate=0.0, is_encoder_decoder=False))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    transformer.save_pretrained(out / "transformer", safe_serialization=True)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    index = {"_class_name": "WanPipeline", "_diffusers_version": "0.42.1", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
             "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def add_tiny_decoder(model_dir: Path, out: Path, family: str = "wan", width: int = 16, seed: int = 0, contrast: float = 30.0,
                     quality: dict | None = None) -> Path:
    """``model_dir`` copied to ``out`` with a tiny decoder for its autoencoder (``TinyDecoder.for_autoencoder_wan`` /
    ``for_autoencoder_kl``, random weights from ``seed``, the output layer's times ``contrast``) in ``tiny_vae/`` and a card naming it, in the form
    ``turbo-edge decoder train`` writes (``decoder.train.save_with_decoder``: safetensors + config.json, a
    ``DecoderVariant`` with a decoder_train lineage)."""
    import dataclasses
    import json
    import shutil

    from turbo_edge.core.tiny_decoder import TINY_FOLDER, TINY_NAME, TinyDecoder
    from turbo_edge.spec.card import DecoderVariant, Lineage, read_card, write_card

    shutil.copytree(model_dir, out)
    vae_config = json.loads((out / "vae" / "config.json").read_text())
    build = TinyDecoder.for_autoencoder_wan if family == "wan" else TinyDecoder.for_autoencoder_kl
    torch.manual_seed(seed)
    tiny = build(vae_config, width=width)
    with torch.no_grad():  # default init leaves frames at std ~0.03 (4 of 255): scaled so they span the range, as a trained decoder's
        tiny.conv_out.weight.mul_(contrast)
    tiny.save_pretrained(out / TINY_FOLDER, safe_serialization=True)
    card = read_card(out)
    card = card if card.present else ModelCard()
    variant = DecoderVariant(TINY_FOLDER, "TinyDecoder", Lineage(stage="decoder_train", parent=str(model_dir)), quality or {"psnr_db": 20.0})
    write_card(dataclasses.replace(card, decoders={**card.decoders, TINY_NAME: variant}), out)
    return out


def copy_with_moved_vae_weight(src: Path, out: Path, name: str, delta: float) -> Path:
    """A copy of model directory ``src`` whose autoencoder has one tensor (``name``) moved by ``delta``: the same
    architecture, another latent space (what a decoder variant made for ``src`` must be refused on)."""
    import shutil

    from diffusers import AutoencoderKL

    shutil.copytree(src, out)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    with torch.no_grad():
        vae.get_parameter(name).add_(delta)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    return out
