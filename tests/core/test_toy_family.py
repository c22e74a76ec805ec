"""Registering a new model family touches the registries only.

A toy family is registered here and nowhere else: a video DiT of its own class (a ``WanTransformer3DModel``
subclass, in its own ``dit/`` folder) with the per-frame ``AutoencoderKL`` and a CLIP text encoder, DDPM-parameterised,
under its own pipeline class. The test patches exactly two registries, ``core.denoiser.FAMILIES`` and
``core.families.MODEL_FAMILIES``, and the whole load -> save -> sample -> prepare path then runs through the plug
points. Files a new family touches, before this registry existed: ``core/denoiser.py``, ``core/pipeline_io.py``
(``COMPONENTS``, ``WEIGHTED``, ``PIPELINE_CLASSES``, ``load_teacher``'s hard-wired classes, ``save_model``'s index),
``core/sampling.py`` (``latent_shape``, ``decode``, ``encode_text``), ``core/dataset.py`` (``encode_latents``,
``resolve_geometry``), ``core/memory.py`` and ``evaluate.py``; after: one registry entry (``core/families.py``), plus
a plug-point class in ``core/denoiser.py`` / ``core/autoencoders.py`` / ``core/text_encoders.py`` for a component
kind that is new (a new denoiser class here).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, WanTransformer3DModel
from tiny_models import SMALL_SPEC

from turbo_edge.core import denoiser, families
from turbo_edge.core.autoencoders import AUTOENCODERS
from turbo_edge.core.denoiser import WanFamily, call_denoiser
from turbo_edge.core.text_encoders import TEXT_ENCODERS


class ToyDiT(WanTransformer3DModel):
    """A denoiser class diffusers does not know."""


class ToyDenoiser(WanFamily):
    name = "toy"
    diffusers_class = "ToyDiT"
    folder = "dit"

    def module_class(self) -> type:
        return ToyDiT

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        return ToyDiT.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)


TOY = families.ModelFamily(name="toy", pipeline_classes=("ToyT2VPipeline",), denoiser=ToyDenoiser(),
                           autoencoder=AUTOENCODERS["AutoencoderKL"], text=TEXT_ENCODERS["CLIPTextModel"], tokenizer_class="CLIPTokenizer",
                           schedulers=(), parameterisation="ddpm", default_frames=SMALL_SPEC.frames)


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(denoiser.FAMILIES, "ToyDiT", TOY.denoiser)
    monkeypatch.setitem(families.MODEL_FAMILIES, "toy", TOY)
    return TOY


def _toy_model(tmp_path: Path):
    from transformers import CLIPTokenizer

    from turbo_edge.core.models import build_text_encoder, build_vae
    from turbo_edge.core.pipeline_io import T2VModel, save_model
    from turbo_edge.spec.card import ModelCard
    from turbo_edge.spec.tokenizer_files import write_tokenizer

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(tmp_path / "tok", SMALL_SPEC.words, SMALL_SPEC.max_length))
    dit = ToyDiT(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=SMALL_SPEC.latent_channels,
                 out_channels=SMALL_SPEC.latent_channels, text_dim=SMALL_SPEC.text_hidden, freq_dim=32, ffn_dim=32, num_layers=2,
                 rope_max_seq_len=32)
    model = T2VModel(dit, build_vae(SMALL_SPEC), build_text_encoder(SMALL_SPEC, len(tokenizer)), tokenizer,
                     DDIMScheduler(**SMALL_SPEC.scheduler_config()), components=TOY)
    card = ModelCard(kind="teacher", frames=SMALL_SPEC.frames, height=SMALL_SPEC.size, width=SMALL_SPEC.size)
    return save_model(model, tmp_path / "toy", card=card)


def test_a_registered_toy_family_loads_saves_samples_and_prepares(toy_registered, tmp_path: Path):
    from turbo_edge.core.memory import estimate
    from turbo_edge.core.pipeline_io import load_teacher, model_family
    from turbo_edge.core.sampling import generate_teacher, latent_shape

    path = _toy_model(tmp_path)
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "ToyT2VPipeline" and index["dit"] == ["diffusers", "ToyDiT"] and (path / "dit").is_dir()
    assert model_family(path) is TOY
    model = load_teacher(path)
    assert type(model.unet) is ToyDiT and model.family is TOY.denoiser
    assert latent_shape(model, None, None, None) == (4, 4, 8, 8)
    clips = generate_teacher(model, ["a red circle moving left"], steps=2, guidance=2.0)
    assert clips.shape == (1, SMALL_SPEC.frames, SMALL_SPEC.size, SMALL_SPEC.size, 3) and clips.dtype == np.uint8
    x, t, text = torch.randn(1, 4, 4, 8, 8), torch.tensor([500]), model.encode_prompts(["a red circle moving left"])
    torch.testing.assert_close(call_denoiser(model.unet, x, t, text), model.unet(x, t, encoder_hidden_states=text, return_dict=False)[0])
    assert estimate(path).parameters["dit"] == sum(p.numel() for p in model.unet.parameters())


def test_without_registration_the_toy_directory_is_refused(toy_registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.spec.errors import ModelLayoutError

    path = _toy_model(tmp_path)
    monkeypatch.delitem(families.MODEL_FAMILIES, "toy")
    with pytest.raises(ModelLayoutError, match="'ToyT2VPipeline', not a text-to-video pipeline"):
        load_teacher(path)
