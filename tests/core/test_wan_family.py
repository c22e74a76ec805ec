"""The Wan family (WanTransformer3DModel + AutoencoderKLWan + UMT5, flow matching) through loading, sampling, data
prepare and the model card, on diffusers' own Wan test configuration saved with save_pretrained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge.core import world
from turbo_edge.core.autoencoders import LatentGeometry
from turbo_edge.core.memory import estimate
from turbo_edge.core.pipeline_io import load_teacher, model_family, save_model
from turbo_edge.core.sampling import clip_geometry, generate_teacher, initial_noise, latent_shape
from turbo_edge.spec.card import ModelCard, read_card, write_card
from turbo_edge.spec.errors import ModelLayoutError


@pytest.fixture(scope="module")
def wan(wan_test_dir: Path):
    return load_teacher(wan_test_dir)


def test_the_test_configuration_loads_as_the_wan_family(wan, wan_test_dir: Path):
    assert model_family(wan_test_dir).name == "wan"
    assert type(wan.unet).__name__ == "WanTransformer3DModel" and type(wan.vae).__name__ == "AutoencoderKLWan"
    assert type(wan.text_encoder).__name__ == "UMT5EncoderModel" and type(wan.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    geo = wan.components.autoencoder.geometry(wan.vae)
    assert geo == LatentGeometry(channels=16, spatial_factor=8, temporal_factor=4, causal_first_frame=True)
    assert latent_shape(wan, 9, 32, 32) == (16, 3, 4, 4)
    assert not read_card(wan_test_dir).present  # a third-party directory: no card, the family's defaults


@pytest.mark.parametrize("size, rule", [((8, 32, 32), "1 \\+ 4k frames"), ((9, 24, 32), "multiples of 16"),
                                        ((9, 32, 1024), "RoPE table covers 32")])
def test_a_geometry_the_model_cannot_take_is_one_line_naming_the_rule(wan, size, rule):
    with pytest.raises(ValueError, match=rule):
        clip_geometry(wan, *size)


def test_prompts_are_encoded_as_wan_pipeline_encodes_them(wan):
    from diffusers import WanPipeline

    pipe = WanPipeline(tokenizer=wan.tokenizer, text_encoder=wan.text_encoder, vae=wan.vae, transformer=wan.unet, scheduler=wan.scheduler)
    prompts = ["a red circle moving left", "a cat running", ""]
    ours = wan.encode_prompts(prompts)
    theirs = pipe._get_t5_prompt_embeds(prompts, max_sequence_length=ours.shape[1])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    length = int(wan.tokenizer(prompts[0]).input_ids.__len__())
    assert ours[0, length:].abs().max() == 0 and ours[0, :length].abs().min() > 0  # zero past the prompt, as Wan's


def test_the_teacher_sampler_matches_wan_pipeline(wan):
    """Two flow-Euler steps with CFG from the same initial latents: our frames equal WanPipeline's (rounding aside)."""
    from diffusers import WanPipeline

    prompt, steps, guidance = "a red circle moving left", 2, 4.0
    ours = generate_teacher(wan, [prompt], steps=steps, guidance=guidance, seed=3, frames=9, height=32, width=32)[0]
    pipe = WanPipeline(tokenizer=wan.tokenizer, text_encoder=wan.text_encoder, vae=wan.vae, transformer=wan.unet, scheduler=wan.scheduler)
    latents = initial_noise(latent_shape(wan, 9, 32, 32), 3, 1)
    video = pipe(prompt=prompt, negative_prompt="", num_frames=9, height=32, width=32, num_inference_steps=steps, guidance_scale=guidance,
                 latents=latents, max_sequence_length=wan.components.text.max_length(wan.text_encoder, wan.tokenizer), output_type="np").frames[0]
    theirs = np.round(np.asarray(video) * 255).astype(np.int16)
    assert ours.shape == theirs.shape == (9, 32, 32, 3)
    assert np.abs(ours.astype(np.int16) - theirs).max() <= 1


def test_save_model_writes_the_wan_layout_and_it_loads_back(wan, tmp_path: Path):
    card = ModelCard(kind="teacher", frames=9, height=32, width=32, lead_in_frames=1)
    out = save_model(wan, tmp_path / "copy", card=card)
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"] and index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    again = load_teacher(out)
    assert again.lead_in_frames == 1 and clip_geometry(again, None, None, None) == (9, 32, 32)
    x = torch.randn(1, 16, 3, 4, 4)
    t, text = torch.tensor([500.0]), torch.randn(1, 4, 32)
    torch.testing.assert_close(again.denoise(x, t, text), wan.denoise(x, t, text))


def test_a_wan_directory_with_a_unet_folder_named_is_refused(wan_test_dir: Path, tmp_path: Path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(wan_test_dir, bad)
    index = json.loads((bad / "model_index.json").read_text())
    index["transformer"] = ["diffusers", "UNet3DConditionModel"]
    (bad / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLayoutError, match="transformer is a 'UNet3DConditionModel'"):
        load_teacher(bad)


def test_data_prepare_encodes_real_videos_through_the_causal_autoencoder(wan, wan_test_dir: Path, tmp_path: Path):
    from data_sources import make_videos, write_jsonl

    from turbo_edge.core import video_io
    from turbo_edge.core.dataset import prepare
    from turbo_edge.core.prepared import PreparedData
    from turbo_edge.spec.configs.data import DataPrepareConfig

    videos = write_jsonl(make_videos(tmp_path / "videos"), [("bars.mp4", "a red circle moving left"), ("wide.mp4", "a cat running")])
    index = prepare(DataPrepareConfig(source=str(videos), model=str(wan_test_dir), out=str(tmp_path / "data"), frames=9, height=32, width=32))
    assert index["geometry"] == {"frames": 9, "height": 32, "width": 32} and len(index["model"]["latents_std"]) == 16
    shard = PreparedData(tmp_path / "data").load_shard(0)
    assert tuple(shard.latents.shape) == (2, 3, 16, 4, 4)  # [n, latent frames, C, h, w]
    clip = video_io.read_clip(videos / "bars.mp4", 9, 32, 32)
    direct = wan.components.autoencoder.encode(wan.vae, clip[None])[0]
    np.testing.assert_allclose(shard.latents[0].float().numpy(), direct.numpy(), atol=4e-3)  # float16 storage
    torch.testing.assert_close(shard.text.float(), wan.encode_prompts(["a red circle moving left", "a cat running"]), atol=4e-3, rtol=0)
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        prepare(DataPrepareConfig(source=str(videos), model=str(wan_test_dir), out=str(tmp_path / "data8"), frames=8, height=32, width=32))


def test_the_causal_autoencoder_round_trip_decodes_every_frame(wan):
    clip = world.batch("train", 0, [0], world.WorldConfig(lead_in=1))[1]
    z = wan.components.autoencoder.encode(wan.vae, clip)
    assert tuple(z.shape) == (1, 3, 16, 4, 4)
    frames = wan.decode_latents(z.permute(0, 2, 1, 3, 4))
    assert frames.shape == (1, 9, 32, 32, 3) and frames.dtype == np.uint8


def test_memory_estimate_reads_the_wan_configs(wan_test_dir: Path, wan):
    est = estimate(wan_test_dir)
    assert est.parameters["transformer"] == sum(p.numel() for p in wan.unet.parameters())
    assert est.parameters["vae"] == sum(p.numel() for p in wan.vae.parameters())
    assert est.activation_bytes > 0


def test_lead_in_world_clips_end_with_the_world_clip():
    for i in range(3):
        attrs, clip = world.sample("val", 0, i)
        attrs9, clip9 = world.sample("val", 0, i, world.WorldConfig(lead_in=1))
        assert attrs == attrs9 and clip9.shape[0] == 9 and np.array_equal(clip9[1:], clip)


def test_card_lead_in_round_trips_and_is_absent_where_unset(tmp_path: Path):
    write_card(ModelCard(kind="teacher", frames=9, lead_in_frames=1), tmp_path)
    assert read_card(tmp_path).lead_in_frames == 1
    write_card(ModelCard(kind="teacher", frames=8), tmp_path)
    assert "lead_in_frames" not in json.loads((tmp_path / "turbo_edge.json").read_text())
    from turbo_edge.spec.errors import CardError

    with pytest.raises(CardError, match="lead_in_frames"):
        ModelCard(kind="teacher", lead_in_frames=-1)


def test_the_guidance_embedding_starts_as_the_teacher_and_reloads(wan, tmp_path: Path):
    """A student's guidance embedding enters the time embedding zero-initialised (step 0 is the teacher), is recorded in
    the config, and WanFamily.load rebuilds it with its weights."""
    import copy

    from turbo_edge.core.denoiser import GUIDANCE_KEY, WanFamily, attach_wan_guidance_embedding, call_denoiser
    from turbo_edge.spec.param import guidance_embedding

    student = attach_wan_guidance_embedding(copy.deepcopy(wan.unet), 16)
    g = torch.Generator().manual_seed(0)
    x, t, text = torch.randn(2, 16, 3, 4, 4, generator=g), torch.tensor([900.0, 300.0]), torch.randn(2, 5, 32, generator=g)
    w = torch.from_numpy(guidance_embedding(np.array([2.0, 5.0]), 16))
    torch.testing.assert_close(call_denoiser(student, x, t, text, w), call_denoiser(wan.unet, x, t, text))
    with torch.no_grad():
        student.condition_embedder.time_embedder.cond_proj.weight.normal_(generator=g)
    guided = call_denoiser(student, x, t, text, w)
    assert (guided - call_denoiser(student, x, t, text, w.flip(0))).abs().max() > 1e-3  # the scale now matters
    assert WanFamily().geometry(student).guidance_dim == 16 and student.config[GUIDANCE_KEY] == 16
    student.save_pretrained(tmp_path / "transformer", safe_serialization=True)
    again = WanFamily().load(tmp_path / "transformer", torch.float32)
    torch.testing.assert_close(call_denoiser(again, x, t, text, w), guided)
    with pytest.raises(ValueError, match="no guidance embedding"):
        call_denoiser(wan.unet, x, t, text, w)
    with pytest.raises(ValueError, match="already has a guidance embedding"):
        attach_wan_guidance_embedding(student, 16)
