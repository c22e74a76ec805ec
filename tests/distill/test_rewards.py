"""Reward models: registry, frozen-but-differentiable contract, builtin accuracy, HF wrappers, latent reward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge.cli import main as cli_main
from turbo_edge.core import world
from turbo_edge.core.data import to_pixels
from turbo_edge.core.rewards import ASSET_DIR, REWARDS, RewardConfig, RewardModel, load_reward
from turbo_edge.core.rewards.builtin import ImageTextReward, VideoTextReward, time_slope
from turbo_edge.core.rewards.latent import motion_direction_score, resolve_target, train_latent_reward
from turbo_edge.spec.configs import RewardTrainConfig

PROMPTS = ["a red circle moving left", "a blue square staying still", "a green diamond moving up"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _val_clips(n: int, seed: int = 3) -> tuple[list[world.Attributes], torch.Tensor]:
    attrs, clips = world.batch("val", seed, range(n))
    return attrs, to_pixels(clips)


def _assert_input_grad_only(model: torch.nn.Module, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    r = model(x, prompts)
    assert r.shape == (len(prompts),) and torch.isfinite(r).all()
    r.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "no gradient reached the input"
    assert all(not p.requires_grad and p.grad is None for p in model.parameters()), "a reward parameter takes gradients"
    return r


# ---------------------------------------------------------------- registry and errors


def test_registry_names():
    from turbo_edge.core.rewards.registry import reward_class
    from turbo_edge.spec.configs import REWARD_NAMES

    assert set(REWARDS) == {"builtin-image", "builtin-video", "clip", "xclip", "latent"} == set(REWARD_NAMES)  # configs validate with these
    assert all(issubclass(reward_class(n), RewardModel) for n in REWARDS)  # every lazy entry resolves to a model class


def test_unknown_reward_lists_valid_names():
    with pytest.raises(ValueError, match="unknown reward 'hps'.*builtin-image.*xclip"):
        load_reward("hps")


def test_wrapper_without_path_is_a_clear_error():
    with pytest.raises(ValueError, match="CLIPModel directory"):
        load_reward("clip")


def test_pickle_only_directory_refused(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not-loaded")
    for name in ("clip", "xclip", "builtin-video"):
        with pytest.raises(ValueError, match=r"only pickle weights \['pytorch_model.bin'\].*safetensors only"):
            load_reward(name, str(tmp_path))


def test_missing_builtin_weights_say_how_to_train(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="rewards.train --which image"):
        load_reward("builtin-image", str(tmp_path / "absent"))


# ---------------------------------------------------------------- builtin models (random weights)


@pytest.mark.parametrize("cls", [ImageTextReward, VideoTextReward])
def test_builtin_frozen_differentiable_and_roundtrip(cls, tmp_path: Path):
    from turbo_edge.core.rewards import save_reward

    torch.manual_seed(0)
    name = "builtin-image" if cls is ImageTextReward else "builtin-video"
    model = cls(RewardConfig(name=name)).freeze()
    _, x = _val_clips(3)
    r = _assert_input_grad_only(model, x[:, :2] if cls is ImageTextReward else x, PROMPTS)
    assert r.abs().max() <= 1.0 + 1e-5  # a cosine similarity
    save_reward(model, model.cfg, tmp_path / name)
    loaded = load_reward(name, str(tmp_path / name))
    assert type(loaded) is cls and loaded.kind == model.kind
    torch.testing.assert_close(loaded(x[:, :2] if cls is ImageTextReward else x, PROMPTS), r.detach())


def test_video_reward_accepts_any_frame_count():
    model = VideoTextReward(RewardConfig(name="builtin-video")).freeze()
    _, x = _val_clips(3)
    for frames in ([0], [0, 7], [0, 2, 5, 7]):
        assert model(x[:, frames], PROMPTS).shape == (3,)


def test_time_slope_is_stride_invariant():
    t = torch.linspace(0, 1, 8)
    track = (3.0 * t + 1.0)[None, :, None]  # [B=1, T=8, 1]
    assert time_slope(track).item() == pytest.approx(3.0, abs=1e-5)
    assert time_slope(track[:, [0, 7]]).item() == pytest.approx(3.0, abs=1e-5)
    assert time_slope(track[:, :1]).item() == 0.0


# ---------------------------------------------------------------- builtin models (shipped weights)


def _shipped(name: str):
    if not (ASSET_DIR / name / "model.safetensors").is_file():
        pytest.skip(f"{name} weights not trained (python -m turbo_edge.core.rewards.train --which {name[8:]})")
    return load_reward(name)


def test_builtin_image_ranks_matching_prompt_first():
    model = _shipped("builtin-image")
    attrs, x = _val_clips(48)
    rng = np.random.default_rng(0)
    wrong = []
    for a in attrs:  # another colour, same shape and motion: only the frames can tell
        colours = [c for c in world.COLOURS if c != a.colour]
        wrong.append(world.Attributes(colours[rng.integers(len(colours))], a.shape, a.motion).prompt)
    with torch.no_grad():
        frames = x[:, [1, 6]]
        right = model(frames, [a.prompt for a in attrs])
        mismatched = model(frames, wrong)
    assert (right > mismatched).float().mean() >= 0.9
    meta = json.loads((ASSET_DIR / "builtin-image" / "metrics.json").read_text())
    assert meta["val"]["content_top1"] >= 0.8


def test_builtin_video_prefers_the_right_motion():
    model = _shipped("builtin-video")
    attrs, x = _val_clips(48)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "left"}
    with torch.no_grad():
        right = model(x, [a.prompt for a in attrs])
        wrong = model(x, [world.Attributes(a.colour, a.shape, opposite[a.motion]).prompt for a in attrs])
    assert (right > wrong).float().mean() >= 0.85
    meta = json.loads((ASSET_DIR / "builtin-video" / "metrics.json").read_text())
    assert meta["val"]["motion_acc"] >= 0.6


# ---------------------------------------------------------------- transformers wrappers


def _tiny_text_config(directory: Path) -> dict:
    from transformers import CLIPTokenizer

    from turbo_edge.spec.tokenizer_files import write_tokenizer

    write_tokenizer(directory, world.vocabulary())
    tok = CLIPTokenizer.from_pretrained(directory)
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def test_clip_wrapper_from_small_random_dir(tmp_path: Path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=24, patch_size=8)
    CLIPModel(CLIPConfig(text_config=_tiny_text_config(tmp_path), vision_config=vision, projection_dim=16)).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reward = load_reward("clip", str(tmp_path))
    assert reward.kind == "image" and reward.image_size == (24, 24)
    _, x = _val_clips(3)
    r = _assert_input_grad_only(reward, x[:, :2], PROMPTS)
    assert r.abs().max() <= reward.model.logit_scale.exp().item() + 1e-4  # cos * logit scale


def test_xclip_wrapper_from_small_random_dir(tmp_path: Path):
    from transformers import XCLIPConfig, XCLIPModel

    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=24,
                  patch_size=8, num_frames=4, mit_hidden_size=16, mit_intermediate_size=32, mit_num_attention_heads=2)
    config = XCLIPConfig(text_config=_tiny_text_config(tmp_path), vision_config=vision, projection_dim=16, prompt_layers=1,
                         prompt_num_attention_heads=2)
    XCLIPModel(config).save_pretrained(tmp_path)
    reward = load_reward("xclip", str(tmp_path))
    assert reward.kind == "video"
    _, x = _val_clips(3)
    _assert_input_grad_only(reward, x, PROMPTS)  # 8 frames strided to 4
    assert reward(x[:, :2], PROMPTS).shape == (3,)  # 2 frames repeated to 4


# ---------------------------------------------------------------- latent reward (DOLLAR)


def test_motion_direction_score_is_a_sound_target():
    attrs, x = _val_clips(40)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "left"}
    right = motion_direction_score(x, [a.prompt for a in attrs])
    wrong = motion_direction_score(x, [world.Attributes(a.colour, a.shape, opposite[a.motion]).prompt for a in attrs])
    assert not right.requires_grad
    assert (right > wrong).all() and right.mean() > 0.9


def test_latent_target_names():
    assert resolve_target("motion")[0] == "motion"
    with pytest.raises(ValueError, match="unknown latent-reward target 'latent'.*motion.*builtin-video"):
        resolve_target("latent")


def test_latent_reward_trains_on_tiny_random_vae(tmp_path: Path):
    from turbo_edge.core.models import TinyTeacherSpec, build_vae
    from turbo_edge.core.rewards import save_reward

    torch.manual_seed(0)
    vae = build_vae(TinyTeacherSpec(vae_channels=(16, 16))).eval()

    def target(frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:  # a prompt part and a pixel part
        primary = torch.tensor([float(p.split()[1] in ("red", "green", "blue")) for p in prompts])
        return primary + 50 * frames.detach().mean((1, 2, 3, 4))

    model, history = train_latent_reward(vae, target, steps=60, batch=16, num_samples=40, lr=5e-3, progress=False,
                                         cfg=RewardConfig(name="latent", width=8, text_dim=16))
    assert history["fit_mse_end"] < 0.6 * history["fit_mse_start"]
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])
    assert model.cfg.latent_channels == 4 and model.kind == "latent"
    latents = torch.randn(3, 4, 8, 16, 16)
    _assert_input_grad_only(model, latents, PROMPTS)
    save_reward(model, model.cfg, tmp_path / "latent")
    again = load_reward("latent", str(tmp_path / "latent"))
    torch.testing.assert_close(again(latents, PROMPTS), model(latents, PROMPTS))
    with pytest.raises(ValueError, match="4-channel latents, got 3"):
        model(latents[:, :3], PROMPTS)


def test_latent_dataset_takes_its_x0_share_from_the_denoiser(tiny_t2v_dir: Path):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.rewards.latent import build_latent_dataset, teacher_x0_denoiser

    teacher = load_teacher(tiny_t2v_dir)
    seen: list[int] = []

    def zeros(z: torch.Tensor, prompts: list[str], rng: np.random.Generator) -> torch.Tensor:
        seen.append(len(prompts))
        return torch.zeros_like(z)

    target = lambda frames, prompts: frames.mean((1, 2, 3, 4))  # noqa: E731
    lats, _, _ = build_latent_dataset(teacher.vae, target, 64, 0, denoiser=zeros, x0_fraction=0.5)
    zeroed = int((lats.flatten(1).abs().amax(1) == 0).sum())
    assert zeroed == sum(seen) and 20 <= zeroed <= 44  # about half of 64
    plain, _, _ = build_latent_dataset(teacher.vae, target, 64, 0, denoiser=zeros, x0_fraction=0.0)
    assert int((plain.flatten(1).abs().amax(1) == 0).sum()) == 0
    # The teacher's one-step x0 at an almost clean timestep is almost the clean latent; at t=900 it is not.
    z = lats[:2].clone() + 1.0
    near = teacher_x0_denoiser(teacher, t_range=(1, 1))(z, PROMPTS[:2], np.random.default_rng(0))
    far = teacher_x0_denoiser(teacher, t_range=(900, 900))(z, PROMPTS[:2], np.random.default_rng(0))
    assert near.shape == z.shape and (near - z).abs().mean() < 0.05 * z.abs().mean() < (far - z).abs().mean()
    with pytest.raises(ValueError, match="x0_fraction"):
        RewardTrainConfig(which="latent", teacher="builtin", x0_fraction=1.5)


# ---------------------------------------------------------------- training entry point


def test_train_config_validation():
    with pytest.raises(ValueError, match="which must be one of"):
        RewardTrainConfig(which="audio")
    with pytest.raises(ValueError, match="needs --teacher"):
        RewardTrainConfig(which="latent")


def test_train_cli_dry_run_and_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli_main(["rewards", "train", "--which", "video", "--steps", "7", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kind"] == "reward_train" and printed["steps"] == 7 and printed["which"] == "video"
    out = tmp_path / "img"
    assert cli_main(["rewards", "train", "--which", "image", "--steps", "2", "--batch", "8", "--pool-clips", "1024", "--eval-clips", "8",
                 "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "metrics.json"}
    assert (out / "model.safetensors").stat().st_size < 1_000_000
    reward = load_reward("builtin-image", str(out))
    _, x = _val_clips(2)
    assert reward(x[:, :1], PROMPTS[:2]).shape == (2,)
