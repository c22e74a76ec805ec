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
