"""Shared fixtures: tiny randomly initialised models in diffusers layout, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from turbo_edge.core import world
from turbo_edge.core.models import TinyTeacherSpec


def build_random_t2v(out: Path, spec: TinyTeacherSpec, meta: dict | None = None, seed: int = 0) -> Path:
    """A randomly initialised text-to-video model of ``spec`` saved in diffusers layout (safetensors)."""
    from transformers import CLIPTokenizer

    from turbo_edge.core.models import build_scheduler, build_text_encoder, build_unet, build_vae
    from turbo_edge.core.pipeline_io import T2VModel, save_model
    from turbo_edge.core.tokenizer_files import write_tokenizer

    torch.manual_seed(seed)
    tok_dir = write_tokenizer(out.parent / f"{out.name}_tokenizer_src", spec.words, spec.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    model = T2VModel(build_unet(spec), build_vae(spec), build_text_encoder(spec, len(tokenizer)), tokenizer, build_scheduler(spec))
    return save_model(model, out, meta=meta)


# A configuration unlike the builtin teacher's: two UNet levels, narrower, 16x16 frames, 4 frames.
SMALL_SPEC = TinyTeacherSpec(
    frames=4, size=16, vae_channels=(16, 16), unet_channels=(16, 32, 32), unet_heads=2, text_hidden=32, text_layers=1,
)


@pytest.fixture(scope="session")
def tiny_t2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny_t2v"
    meta = {"kind": "teacher", "frames": SMALL_SPEC.frames, "closed_vocabulary": world.vocabulary(), "default_guidance": 2.0}
    return build_random_t2v(out, SMALL_SPEC, meta=meta)


@pytest.fixture(scope="session")
def open_vocab_t2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like a real checkpoint: no turbo_edge.json, so no closed vocabulary and no turbo-edge metadata."""
    out = tmp_path_factory.mktemp("models") / "open_t2v"
    return build_random_t2v(out, SMALL_SPEC, meta=None, seed=1)


@pytest.fixture(scope="session")
def tiny_student_dir(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student distilled from the tiny teacher for one step: its layout, LoRA merge and sampler contract are
    real, its weights barely moved (pruning, export and runtime tests build on it)."""
    from turbo_edge.distill.config import DistillConfig
    from turbo_edge.distill.train import train

    out = tmp_path_factory.mktemp("students") / "distill"
    return train(DistillConfig(teacher=str(tiny_t2v_dir), out=str(out), steps=1, batch=2, dataset_clips=8, lora_rank=4, w_embedding_dim=8))


def student_unet_inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (latents, text, w-embedding) for the tiny student's UNet (SMALL_SPEC, 8-dim guidance embedding)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, 4, 8, 8, generator=g), torch.randn(b, 16, 32, generator=g), torch.randn(b, 8, generator=g)


def student_unet_forward(unet: torch.nn.Module, x: torch.Tensor, e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One no-grad call of a student UNet at timesteps 300 / 700."""
    with torch.no_grad():
        return unet(x, torch.tensor([300, 700][: len(x)]), encoder_hidden_states=e, timestep_cond=w).sample
