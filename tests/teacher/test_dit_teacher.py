"""The builtin DiT teacher's trainer (``teacher train --family wan``) at the builtin architecture, a few steps: both
phases, the world DATA with its lead-in frame, exact resume, and the export into the WanPipeline layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.spec.configs import TeacherTrainConfig
from turbo_edge.teacher.train import export_teacher, run

SMALL = dict(family="wan", train_text_encoder=False, text_token_std=1.0, vae_steps=2, vae_batch=18, dataset_clips=8, batch=2,
             checkpoint_every=1, log_every=1, threads=1, warmup_steps=2)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dit_teacher") / "straight"
    run(TeacherTrainConfig(out=str(out), unet_steps=3, **SMALL))
    return out


def test_interrupted_transformer_phase_resumes_exactly(straight_run, tmp_path):
    out = tmp_path / "resumed"
    run(TeacherTrainConfig(out=str(out), unet_steps=2, **SMALL))
    run(TeacherTrainConfig(out=str(out), unet_steps=3, **SMALL))
    a = load_file(str(ckpt.latest_checkpoint(straight_run / "unet_ckpt") / "model.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(out / "unet_ckpt") / "model.safetensors"))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 2e-6


def test_the_world_data_has_the_lead_in_frame_and_the_latent_statistics(straight_run):
    index = json.loads((straight_run / "dataset" / "data" / "index.json").read_text())
    assert index["geometry"] == {"frames": 9, "height": 32, "width": 32}
    assert index["latent"]["frames"] == 3 and index["latent"]["causal_first_frame"] is True
    stats = json.loads((straight_run / "vae_latent_stats.json").read_text())
    assert len(stats["latents_mean"]) == len(stats["latents_std"]) == 8 and all(s > 0 for s in stats["latents_std"])
    assert index["model"]["latents_std"] == pytest.approx(stats["latents_std"])


def test_export_writes_a_wan_pipeline_that_samples_nine_frames(straight_run, tmp_path):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import generate_teacher

    out = export_teacher(straight_run, tmp_path / "dit")
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["transformer"][1] == "WanTransformer3DModel"
    model = load_teacher(out)
    assert model.card.lead_in_frames == 1 and model.card.latent_geometry["temporal_factor"] == 4
    assert model.tokenizer("a red circle moving left").input_ids[:5] != model.tokenizer("a blue circle moving left").input_ids[:5]
    clips = generate_teacher(model, ["a red circle moving left"], steps=2)
    assert clips.shape == (1, 9, 32, 32, 3) and clips.dtype == np.uint8
