"""The tiny decoder (core.tiny_decoder) and ``decoder train``: geometry, causality and the temporal path, diffusers
save / load, the quality metrics, the trainer's losses, exact resume, the model directory it writes, config and CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from turbo_edge import cli
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.tiny_decoder import (
    TINY_FOLDER,
    AutoencoderKLTarget,
    TinyDecoder,
    frame_quality,
    load_tiny_decoder,
    psnr,
    ssim,
    tapered_channels,
)
from turbo_edge.decoder.train import train
from turbo_edge.spec.card import ModelCard, read_card
from turbo_edge.spec.configs import DecoderTrainConfig

SD_VAE = {"block_out_channels": [128, 256, 512, 512], "latent_channels": 4, "scaling_factor": 0.18215, "out_channels": 3}


def _latents(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_geometry_follows_the_autoencoder():
    tiny = TinyDecoder.for_autoencoder_kl(SD_VAE, width=32).eval()
    assert list(tiny.config.channels) == [32, 16, 16, 16] and tiny.spatial_factor == 8 and tiny.temporal_factor == 1
    assert tapered_channels(128, 4) == (128, 64, 32, 16) and tapered_channels(8, 3) == (8, 8, 8)
    out = tiny(_latents(2, 4, 3, 4, 5))
    assert out.shape == (2, 3, 3, 32, 40) and out.min() >= -1 and out.max() <= 1
    # The scaled latents as they are, through a soft clamp: near identity within a few std, bounded far out.
    assert tiny.config.latent_clamp == 6.0 and tiny(torch.full((1, 4, 1, 4, 4), 1e6)).isfinite().all()
    with pytest.raises(ValueError, match="4 channel widths"):
        TinyDecoder.for_autoencoder_kl(SD_VAE, channels=(16, 16))


def test_causal_temporal_upsampling_and_memory():
    """A Wan-style causal decoder: 1 + 4k frames from 1 + k latent frames, and no output frame sees a later latent."""
    tiny = TinyDecoder(latent_channels=16, channels=(16, 16, 16), temporal_upsample=(2, 2), causal_first_frame=True).eval()
    z = _latents(1, 16, 3, 4, 4)
    out = tiny(z)
    assert out.shape == (1, 9, 3, 16, 16) and tiny.output_frames(3) == 9
    z2 = z.clone()
    z2[:, :, 2] += 1.0  # latent frame 2 decodes to output frames 5..8
    diff = (tiny(z2) - out).abs().amax(dim=(0, 2, 3, 4))
    assert diff[:5].max() == 0 and diff[5:].min() > 0
    # Memory blocks carry a frame's features to the next frame; without them every frame decodes alone.
    per_frame = {}
    for memory in (True, False):
        torch.manual_seed(0)
        dec = TinyDecoder.for_autoencoder_kl({"block_out_channels": [8, 8], "latent_channels": 4}, width=8, memory=memory).eval()
        z = _latents(1, 4, 3, 4, 4)
        z2 = z.clone()
        z2[:, :, 0] += 1.0
        per_frame[memory] = (dec(z2) - dec(z)).abs().amax(dim=(0, 2, 3, 4))
    assert per_frame[True][1] > 0 and per_frame[False][1] == 0 and per_frame[False][0] > 0


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    tiny = TinyDecoder.for_autoencoder_kl(SD_VAE, width=16).eval()
    tiny.save_pretrained(tmp_path / TINY_FOLDER)
    assert {p.name for p in (tmp_path / TINY_FOLDER).iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}
    back = load_tiny_decoder(tmp_path)
    z = _latents(1, 4, 2, 4, 4)
    assert list(back.config.channels) == [16, 16, 16, 16] and torch.equal(back(z), tiny(z))
    with pytest.raises(FileNotFoundError, match="no tiny decoder"):
        load_tiny_decoder(tmp_path / "elsewhere")


def test_psnr_and_ssim():
    a = torch.zeros(2, 3, 16, 16)
    assert psnr(a, a + 0.1) == pytest.approx(10 * math.log10(4 / 0.01))
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = (a + 0.3 * _latents(2, 3, 16, 16)).clamp(-1, 1)
    assert 0 < ssim(noisy, a + 0.05) < ssim(noisy, noisy) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def world(tiny_t2v_dir, tmp_path_factory):
    """The world's clips prepared once for the tiny teacher (every run below reads them as --data)."""
    from turbo_edge.core.world_export import world_data

    return world_data(str(tiny_t2v_dir), 8, 0, tmp_path_factory.mktemp("decoder_world"))


def _cfg(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), val_data=str(data), val_clips=4, out=str(out), steps=2, batch=2, width=8,
                log_every=1, checkpoint_every=1, threads=1)
    base.update(kw)
    return DecoderTrainConfig.make(**base)


def test_train_writes_the_model_with_its_tiny_decoder(tiny_t2v_dir, world, tmp_path):
    model_dir = train(_cfg(tiny_t2v_dir, world, tmp_path / "run", steps=6, lr=3e-3))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert log[-1]["loss"] < log[0]["loss"]  # the distillation moves towards the full decoder
    assert all(r["loss"] == pytest.approx(r["loss_l1"] + r["loss_mse"] + 0.1 * r["loss_perceptual"], rel=1e-5) for r in log)
    card, parent = read_card(model_dir), read_card(tiny_t2v_dir)
    variant = card.decoders["tiny"]
    assert variant.folder == TINY_FOLDER and variant.cls == "TinyDecoder" and variant.lineage.stage == "decoder_train"
    assert variant.lineage.parent == str(tiny_t2v_dir) and variant.lineage.step == 6
    assert DecoderTrainConfig.from_dict(variant.lineage.config).loop.steps == 6
    assert variant.lineage.details["params_decoder"] < variant.lineage.details["params_full_decoder"]
    assert card.kind == parent.kind and card.sampler == parent.sampler and card.frames == parent.frames
    assert "turbo-edge decoder train" in card.reproduce
    # The card's quality is the written decoder's, against the full decoder, on the held-out latents.
    model = load_teacher(model_dir)
    tiny = load_tiny_decoder(model_dir)
    from turbo_edge.core.train_data import DataSource, load_checked

    latents = DataSource(load_checked(str(world), str(model_dir)), seed=0).head(4).x0
    assert frame_quality(tiny, AutoencoderKLTarget(model.vae), latents) == pytest.approx(variant.quality)
    assert np.isfinite(variant.quality["psnr_db"]) and variant.quality["clips"] == 4
    # The model itself is unchanged: same weights, and the DATA prepared for the parent still fits it.
    parent_model = load_teacher(tiny_t2v_dir)
    assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), parent_model.vae.state_dict().values()))
    # Sampling and eval decode with it where asked: the same uint8 rounding as the full decoder's frames.
    from turbo_edge.core.sampling import decode
    from turbo_edge.core.tiny_decoder import load_decoder_variant
    from turbo_edge.evaluate import run_eval
    from turbo_edge.spec.configs import EvalConfig

    assert load_decoder_variant(model_dir, "full") is None
    frames = decode(model, latents[:2], load_decoder_variant(model_dir, "tiny"))
    expected = ((tiny(latents[:2]) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    assert frames.shape == (2, 4, 16, 16, 3) and np.array_equal(frames, expected)
    assert not np.array_equal(frames, decode(model, latents[:2]))
    scores = {d: run_eval(EvalConfig(model=str(model_dir), steps=2, num=2, decoder=d)) for d in ("full", "tiny")}
    assert scores["tiny"]["decoder"] == "tiny" and 0 <= scores["tiny"]["content_acc"] <= 1
    with pytest.raises(ValueError, match=r"no 'pruned' decoder; it has \['full', 'tiny'\]"):
        run_eval(EvalConfig(model=str(model_dir), steps=2, num=2, decoder="pruned"))
    with pytest.raises(ValueError, match="is an evaluator anchor"):  # a bundle's decoder is a choice too (tests/runtime/test_decoders.py)
        EvalConfig(model="groundtruth", decoder="tiny")


def test_resume_is_exact_and_refuses_another_config(tiny_t2v_dir, world, tmp_path):
    ref = train(_cfg(tiny_t2v_dir, world, tmp_path / "ref", steps=3, val_clips=0))
    train(_cfg(tiny_t2v_dir, world, tmp_path / "run", steps=1, val_clips=0))
    run = train(_cfg(tiny_t2v_dir, world, tmp_path / "run", steps=3, val_clips=0))  # resumed from the step-1 checkpoint
    a, b = load_tiny_decoder(ref).state_dict(), load_tiny_decoder(run).state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert read_card(ref).decoders["tiny"].quality == {}  # val_clips 0: nothing measured, nothing claimed
    with pytest.raises(ValueError, match="config hash"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "run", steps=4, width=16, val_clips=0))


def test_adversarial_term_trains_a_discriminator(tiny_t2v_dir, world, tmp_path):
    train(_cfg(tiny_t2v_dir, world, tmp_path / "adv", steps=2, adv_weight=0.1, adv_start=1, perceptual_weight=0.0, val_clips=0, disc_width=8))
    rows = [json.loads(line) for line in (tmp_path / "adv" / "log.jsonl").read_text().splitlines()]
    assert "loss_disc" not in rows[0] and "loss_perceptual" not in rows[0]  # before adv_start; perceptual off
    assert np.isfinite(rows[1]["loss_disc"]) and rows[1]["loss"] == pytest.approx(rows[1]["loss_l1"] + rows[1]["loss_mse"] + 0.1 * rows[1]["loss_adv_g"], rel=1e-5)
    assert (tmp_path / "adv" / "ckpt" / "step_0000002" / "discriminator.safetensors").is_file()


def test_config_and_cli(capsys):
    with pytest.raises(ValueError, match="all 0"):
        DecoderTrainConfig(l1_weight=0, mse_weight=0, perceptual_weight=0)
    with pytest.raises(ValueError, match="channels must all be >= 1"):
        DecoderTrainConfig(channels=(8, 0))
    assert DecoderTrainConfig().loop.lr == 5e-4 and DecoderTrainConfig().loop.steps == 2000
    assert cli.main(["decoder", "train", "--model", "m", "--channels", "32,16", "--no-memory", "--adv-weight", "0.1", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kind"] == "decoder_train" and printed["channels"] == [32, 16] and printed["memory"] is False and printed["adv_weight"] == 0.1
    assert cli.main(["decoder", "train", "--model", "does-not-exist", "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_card_decoders_round_trip(tmp_path):
    from turbo_edge.spec.card import DecoderVariant, Lineage, write_card

    card = ModelCard(decoders={"tiny": DecoderVariant("tiny_vae", "TinyDecoder", Lineage(stage="decoder_train", step=3), {"psnr_db": 30.0})})
    write_card(card, tmp_path)
    assert read_card(tmp_path) == card
    write_card(ModelCard(), tmp_path)
    assert "decoders" not in json.loads((tmp_path / "turbo_edge.json").read_text())  # cards without variants stay as they were
    # A card is a user's file: a decoder folder that leads out of the model directory is refused where the card is read.
    from turbo_edge.spec.errors import CardError

    for folder in ("../outside", "/etc", "a/b", "..", "", "tiny\\vae"):
        write_card(dataclasses.replace(card, decoders={"tiny": dataclasses.replace(card.decoders["tiny"], folder=folder)}), tmp_path)
        with pytest.raises(CardError, match="not a folder name inside the model directory"):
            read_card(tmp_path)


# ------------------------------------------------------------------ the pruned variant (VDMini for the decoder)


def test_pruned_decoder_surgery_replay_and_round_trip(tiny_t2v_dir, tmp_path):
    from turbo_edge.core.pruned_decoder import PrunedDecoder, measure_importance, prune_channels, removable_units, resnets
    from turbo_edge.decoder.train import apply_decoder_plan

    vae = load_teacher(tiny_t2v_dir).vae
    z = _latents(2, 4, 3, 8, 8)
    full = AutoencoderKLTarget(vae).frames(z)
    intact = PrunedDecoder.from_vae(vae).eval()
    assert torch.allclose(intact(z), full, atol=1e-5)  # nothing removed: the full decoder
    units = removable_units(intact.decoder)
    assert "mid_block.attentions.0" in units and "up_blocks.0.resnets.0" in units
    table = measure_importance(vae, z)
    assert sorted(r["unit"] for r in table) == sorted(units) and [r["mse"] for r in table] == sorted(r["mse"] for r in table)
    assert all(r["mse"] > 0 for r in table)
    removed = [table[0]["unit"]]
    pruned = PrunedDecoder.from_vae(vae, removed).eval()
    assert psnr(pruned(z), full) == pytest.approx(10 * math.log10(4 / table[0]["mse"]), rel=1e-4)  # the table's damage
    before = {n: r.norm2.num_channels for n, r in resnets(pruned.decoder).items()}
    kept = prune_channels(pruned.decoder, 0.5, torch.zeros(1, 4, 8, 8))
    for name, keep in kept.items():
        resnet = pruned.decoder.get_submodule(name)
        assert len(keep) == before[name] // 2 == resnet.conv1.out_channels == resnet.conv2.in_channels == resnet.norm2.num_channels
        assert resnet.norm2.num_channels // resnet.norm2.num_groups == before[name] // vae.config.norm_num_groups  # whole groups went
    # The plan replays on the full weights without torch-pruning: the same module, and save / load rebuilds it.
    plan = {"removed": removed, "kept": kept}
    replayed = apply_decoder_plan(vae, plan).eval()
    assert torch.equal(replayed(z), pruned(z))
    assert sum(p.numel() for p in replayed.parameters()) < sum(p.numel() for p in intact.parameters())
    replayed.save_pretrained(tmp_path / "pruned_vae")
    back = PrunedDecoder.from_pretrained(tmp_path / "pruned_vae").eval()
    assert torch.equal(back(z), replayed(z))
    with pytest.raises(ValueError, match="cannot remove"):
        PrunedDecoder.from_vae(vae, ["decoder.conv_out"])


def test_train_pruned_variant_and_replay_its_plan(tiny_t2v_dir, world, tmp_path):
    from turbo_edge.core.tiny_decoder import load_decoder_variant

    model_dir = train(_cfg(tiny_t2v_dir, world, tmp_path / "run", variant="pruned", remove_count=2, channel_ratio=0.5, lr=1e-4,
                           importance_clips=2, val_clips=2))
    plan = json.loads((tmp_path / "run" / "decoder_plan.json").read_text())
    assert plan["removed"] == [r["unit"] for r in plan["importance"][:2]] and plan["kept"] and plan["importance_clips"] == 2
    assert json.loads((model_dir / "pruned_vae" / "decoder_plan.json").read_text()) == plan
    variant = read_card(model_dir).decoders["pruned"]
    assert variant.cls == "PrunedDecoder" and variant.folder == "pruned_vae" and variant.lineage.plans == ("decoder_plan.json",)
    assert variant.lineage.details["removed"] == plan["removed"] and np.isfinite(variant.quality["psnr_db"])
    assert variant.lineage.details["params_decoder"] < variant.lineage.details["params_full_decoder"]
    decoder = load_decoder_variant(model_dir, "pruned")
    assert decoder(_latents(1, 4, 2, 4, 4)).shape == (1, 2, 3, 8, 8)  # the tiny VAE upsamples once
    # Replayed in a new run: the same plan, no importance measured again.
    train(_cfg(tiny_t2v_dir, world, tmp_path / "replay", variant="pruned", plan=str(tmp_path / "run" / "decoder_plan.json"), steps=1,
               val_clips=0))
    assert json.loads((tmp_path / "replay" / "decoder_plan.json").read_text()) == plan
    with pytest.raises(ValueError, match="need --variant pruned"):
        DecoderTrainConfig(channel_ratio=0.5)


def test_saving_a_model_carries_its_decoder_variants(tmp_path):
    """A stage that rewrites a model (prune, convert) keeps the VAE, so it keeps the decoders that decode it: folder and
    card entry; a card naming a folder the source lacks loses that entry instead of naming a missing decoder."""
    import shutil

    from turbo_edge.core.pipeline_io import load_teacher, save_model
    from turbo_edge.spec.card import read_card

    model = load_teacher("builtin-student")  # ships tiny_vae/ and pruned_vae/
    out = save_model(model, tmp_path / "copy")
    assert sorted(read_card(out).decoders) == ["pruned", "tiny"]
    for folder in ("tiny_vae", "pruned_vae"):
        src = model.path / folder / "diffusion_pytorch_model.safetensors"
        assert (out / folder / "diffusion_pytorch_model.safetensors").read_bytes() == src.read_bytes()
    shutil.rmtree(out / "tiny_vae")
    again = save_model(load_teacher(out), tmp_path / "again")
    assert sorted(read_card(again).decoders) == ["pruned"] and not (again / "tiny_vae").exists()


# ---------------------------------------------------------------- the DiT family's causal autoencoder


def test_a_tiny_decoder_for_a_causal_wan_autoencoder_decodes_its_geometry(wan_test_dir):
    from turbo_edge.core.tiny_decoder import AutoencoderKLWanTarget

    model = load_teacher(wan_test_dir)
    tiny = TinyDecoder.for_autoencoder_wan(dict(model.vae.config), width=16)
    # temporal downsample [False, True, True] -> upsample strides 2, 2 (encoder order reversed), first frame alone
    assert tiny.config.temporal_upsample == (2, 2, 1) and tiny.config.causal_first_frame and tiny.config.latent_channels == 16
    latents = _latents(1, 16, 3, 4, 4)
    target = AutoencoderKLWanTarget(model.vae)
    assert tiny(latents).shape == target.frames(latents).shape == (1, 9, 3, 32, 32)
    feats = target.features(target.frames(latents))
    assert feats[0].shape[0] == 9 and len(feats) == 1 + len(model.vae.encoder.down_blocks)


def test_decoder_train_distils_a_wan_decoder_and_eval_decodes_with_it(wan_test_dir, wan_data_dir, tmp_path):
    cfg = DecoderTrainConfig.make(model=str(wan_test_dir), data=str(wan_data_dir), out=str(tmp_path / "run"), steps=4, batch=2, width=16,
                                  lr=3e-3, val_data=str(wan_data_dir), val_clips=2, log_every=1, checkpoint_every=2, threads=1)
    model_dir = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] and all(np.isfinite(r["loss_perceptual"]) for r in log)
    variant = read_card(model_dir).decoders["tiny"]
    assert variant.quality["frames"] == 18 and math.isfinite(variant.quality["psnr_db"])  # 2 clips x 9 frames
    from turbo_edge.evaluate import run_eval
    from turbo_edge.spec.configs.apps import EvalConfig

    result = run_eval(EvalConfig.make(model=str(model_dir), decoder="tiny", frames=9, height=32, width=32, num=2, steps=2))
    assert result["decoder"] == "tiny" and result["n_videos"] == 2


def test_pruned_wan_decoder_surgery_cache_replay_and_round_trip(wan_test_dir, tmp_path):
    """VDMini on the causal decoder: nothing removed is diffusers' own decode; a removed residual block takes its two
    cache slots with it (the causal loop still lines up: frames differ but stay finite and of the full clip's shape);
    narrowing keeps the named channels; the plan replays to the same module and save / load rebuilds it."""
    from turbo_edge.core.pruned_decoder import measure_importance, pruned_class
    from turbo_edge.core.pruned_wan_decoder import CAUSAL_CONV, PrunedWanDecoder, wan_removable_units, wan_resnets
    from turbo_edge.core.tiny_decoder import AutoencoderKLWanTarget
    from turbo_edge.decoder.train import apply_decoder_plan

    vae = load_teacher(wan_test_dir).vae
    assert pruned_class(vae) is PrunedWanDecoder
    z = _latents(2, 16, 3, 4, 4)
    full = AutoencoderKLWanTarget(vae).frames(z)
    intact = PrunedWanDecoder.from_vae(vae).eval()
    assert full.shape == (2, 9, 3, 32, 32) and torch.allclose(intact(z), full, atol=1e-5)
    units = wan_removable_units(intact.decoder)
    assert "mid_block.attentions.0" in units and "mid_block.resnets.0" in units
    assert all(intact.decoder.get_submodule(u).in_dim == intact.decoder.get_submodule(u).out_dim for u in units if "resnets" in u)
    table = measure_importance(vae, z)
    assert sorted(r["unit"] for r in table) == sorted(units) and [r["mse"] for r in table] == sorted(r["mse"] for r in table)
    removed = [next(r["unit"] for r in table if "resnets" in r["unit"])]
    pruned = PrunedWanDecoder.from_vae(vae, removed).eval()
    slots = lambda d: sum(type(m).__name__ == CAUSAL_CONV for m in d.decoder.modules())  # noqa: E731
    assert slots(pruned) == slots(intact) - 2  # conv1 and conv2 of the removed block
    out = pruned(z)
    assert out.shape == full.shape and torch.isfinite(out).all()
    assert psnr(out, full) == pytest.approx(10 * math.log10(4 / next(r["mse"] for r in table if r["unit"] == removed[0])), rel=1e-4)
    before = {n: r.conv1.out_channels for n, r in wan_resnets(pruned.decoder).items()}
    kept = pruned.choose_channels(0.5)
    assert kept and all(len(keep) == round(before[n] / 2) for n, keep in kept.items())  # widths under 16: single channels
    for name, keep in kept.items():
        block = pruned.decoder.get_submodule(name)
        assert block.conv1.out_channels == block.conv2.in_channels == block.norm2.gamma.shape[0] == len(keep)
        assert block.norm2.scale == pytest.approx(len(keep) ** 0.5)
    replayed = apply_decoder_plan(vae, {"removed": removed, "kept": kept}).eval()
    assert torch.equal(replayed(z), pruned(z))
    assert sum(p.numel() for p in replayed.parameters()) < sum(p.numel() for p in intact.parameters())
    replayed.save_pretrained(tmp_path / "pruned_vae")
    back = PrunedWanDecoder.from_pretrained(tmp_path / "pruned_vae").eval()
    assert torch.equal(back(z), replayed(z))
    with pytest.raises(ValueError, match="cannot remove"):
        PrunedWanDecoder.from_vae(vae, ["up_blocks.1.resnets.0"])  # changes the width: not removable


def test_decoder_train_prunes_a_wan_decoder_and_its_bundle_variant_decodes_as_pytorch(wan_test_dir, wan_data_dir, tmp_path):
    """`decoder train --variant pruned` on the DiT family: a plan, a card entry, eval with it; exported as a bundle
    variant (the clip layout, the causal loop unrolled), its frames equal the module's on both runtimes; a bundle with a
    range of clip lengths refuses it in one line."""
    from turbo_edge.core.tiny_decoder import load_decoder_variant
    from turbo_edge.evaluate import run_eval
    from turbo_edge.export import ContractError, export_bundle
    from turbo_edge.runtime import Pipeline
    from turbo_edge.spec.configs import ExportConfig
    from turbo_edge.spec.configs.apps import EvalConfig

    cfg = DecoderTrainConfig.make(model=str(wan_test_dir), data=str(wan_data_dir), out=str(tmp_path / "run"), steps=2, batch=2, variant="pruned",
                                  remove_count=2, channel_ratio=0.5, importance_clips=2, lr=1e-4, val_data=str(wan_data_dir), val_clips=2,
                                  log_every=1, threads=1)
    model_dir = train(cfg)
    plan = json.loads((tmp_path / "run" / "decoder_plan.json").read_text())
    assert plan["removed"] == [r["unit"] for r in plan["importance"][:2]] and plan["kept"]
    variant = read_card(model_dir).decoders["pruned"]
    assert variant.cls == "PrunedWanDecoder" and variant.quality["frames"] == 18 and math.isfinite(variant.quality["psnr_db"])
    assert variant.lineage.details["params_decoder"] < variant.lineage.details["params_full_decoder"]
    result = run_eval(EvalConfig.make(model=str(model_dir), decoder="pruned", frames=9, height=32, width=32, num=2, steps=2))
    assert result["decoder"] == "pruned" and result["n_videos"] == 2
    bundle = export_bundle(model_dir, tmp_path / "bundle", ExportConfig(precisions=("fp32",), decoders=("full", "pruned"), frames=9, height=32,
                                                                         width=32, openvino_check=False, default_steps=2, threads=2))
    decoder = load_decoder_variant(model_dir, "pruned")
    latents = np.random.default_rng(2).standard_normal((1, 16, 3, 4, 4)).astype(np.float32)
    with torch.no_grad():
        frames = np.rint((decoder(torch.from_numpy(latents)).numpy() + 1) * 127.5).astype(int).transpose(0, 1, 3, 4, 2)
    for backend in ("ort-cpu", "openvino"):
        decoded = Pipeline.from_bundle(bundle, backend=backend, threads=2, decoder="pruned").decode(latents)
        assert decoded.shape == frames.shape == (1, 9, 32, 32, 3) and np.abs(decoded.astype(int) - frames).max() <= 1, backend
    with pytest.raises(ContractError, match="one clip length"):
        export_bundle(model_dir, tmp_path / "range", ExportConfig(precisions=("fp32",), decoders=("full", "pruned"), frames=9, min_frames=5,
                                                                   max_frames=13, height=32, width=32, openvino_check=False, default_steps=2))
    assert not (tmp_path / "range").exists()  # refused before anything was written


def test_frame_weights_and_the_cosine_schedule():
    from turbo_edge.decoder.train import frame_weights, lr_factor

    err = torch.tensor([1.0, 1.0, 1.0, 4.0])  # the last frame position 4x worse
    assert torch.equal(frame_weights(err, 0.0), torch.ones(4))
    w = frame_weights(err, 1.0)
    assert w.mean().item() == pytest.approx(1.0) and w[3].item() == pytest.approx(4 * w[0].item())
    assert frame_weights(err, 0.5)[3].item() == pytest.approx(2 * frame_weights(err, 0.5)[0].item())
    assert [lr_factor("constant", s, 10) for s in (0, 5, 10)] == [1.0, 1.0, 1.0]
    assert [lr_factor("cosine", s, 10) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="frame_balance must be in"):
        DecoderTrainConfig(frame_balance=-1)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        DecoderTrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="needs --variant tiny"):
        DecoderTrainConfig(variant="pruned", init="x")
    # Defaults keep the resume identity of runs written before these fields; a cosine run's length is part of its identity.
    assert "frame_balance" not in DecoderTrainConfig().training_hash_fields()
    assert DecoderTrainConfig(lr_schedule="cosine").training_hash_fields()["loop"]["steps"] == 2000
    assert "steps" not in DecoderTrainConfig().training_hash_fields()["loop"]


def test_init_continues_a_tiny_decoder_and_refuses_another(tiny_t2v_dir, world, tmp_path):
    first = train(_cfg(tiny_t2v_dir, world, tmp_path / "first", steps=2, val_clips=0))
    # Zero learning rate after step 0 of a 1-step cosine run: the continued decoder starts as, and stays, the init's.
    same = train(_cfg(tiny_t2v_dir, world, tmp_path / "same", steps=1, val_clips=0, init=str(first), lr_schedule="cosine", lr=1e-12))
    a, b = load_tiny_decoder(first).state_dict(), load_tiny_decoder(same).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    variant = read_card(same).decoders["tiny"]
    assert variant.lineage.config["init"] == str(first) and f'init="{first}"' in variant.lineage.details["reproduce"]
    # Its reproduce line makes the decoder it started from first, then continues it; the model card's line ends with both.
    made_first = read_card(first).decoders["tiny"].lineage.details["reproduce"]
    assert variant.lineage.details["reproduce"].startswith(made_first + " && turbo-edge decoder train ")
    assert read_card(same).reproduce.endswith(variant.lineage.details["reproduce"])
    cont = train(_cfg(tiny_t2v_dir, world, tmp_path / "cont", steps=3, val_clips=0, init=str(first), frame_balance=1.0, lr=3e-3,
                      lr_schedule="cosine"))
    rows = [json.loads(line) for line in (tmp_path / "cont" / "log.jsonl").read_text().splitlines()]
    assert all(r["last_frame_weight"] > 0 for r in rows) and not torch.equal(load_tiny_decoder(cont).conv_out.weight, a["conv_out.weight"])
    with pytest.raises(ValueError, match="another architecture .*width"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "wide", steps=1, val_clips=0, init=str(first), width=16))
    assert not (tmp_path / "wide").exists()  # refused before the run directory is claimed
    with pytest.raises(FileNotFoundError, match="has no tiny decoder"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "none", steps=1, val_clips=0, init=str(tiny_t2v_dir)))
    # The same tiny decoder beside another autoencoder (one weight moved): refused, it decodes another latent space.
    from tiny_models import copy_with_moved_vae_weight

    other = copy_with_moved_vae_weight(first, tmp_path / "other", "decoder.conv_out.weight", 0.5)
    with pytest.raises(ValueError, match="autoencoder differs .*decoder.conv_out.weight"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "o", steps=1, val_clips=0, init=str(other)))


def test_held_out_data_of_another_model_is_refused_before_the_run(tiny_t2v_dir, world, tmp_path):
    """--val-data is scored at the end of a run: one prepared for another model is refused at the start instead."""
    import shutil

    other = tmp_path / "other_data"
    shutil.copytree(world, other)
    index = json.loads((other / "index.json").read_text())
    index["model"]["fingerprint"] = "0" * 64
    (other / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=rf"^--val-data {other} does not fit .*prepared with model"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "run", steps=1, val_data=str(other)))
    assert not (tmp_path / "run").exists()


def test_a_cosine_run_resumes_exactly(tiny_t2v_dir, world, tmp_path):
    """The schedule is a function of the step: a run killed after step 1 and started again ends where an uninterrupted
    one does (the resumed optimiser's stored rate is not the one it continues from); another length is another run."""
    import shutil

    kw = dict(steps=3, val_clips=0, lr=3e-3, lr_schedule="cosine", frame_balance=1.0)
    ref = train(_cfg(tiny_t2v_dir, world, tmp_path / "ref", **kw))
    train(_cfg(tiny_t2v_dir, world, tmp_path / "run", **kw))
    for later in ("step_0000002", "step_0000003"):  # as if killed after the first checkpoint
        shutil.rmtree(tmp_path / "run" / "ckpt" / later)
    run = train(_cfg(tiny_t2v_dir, world, tmp_path / "run", **kw))
    a, b = load_tiny_decoder(ref).state_dict(), load_tiny_decoder(run).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="config hash"):
        train(_cfg(tiny_t2v_dir, world, tmp_path / "run", **{**kw, "steps": 4}))


def test_decoder_variants_load_by_builtin_alias():
    """An alias names the same model directory as its path (bench_decoder --model builtin-student used to read no card)."""
    from turbo_edge.core.pipeline_io import ALIASES
    from turbo_edge.core.pruned_decoder import PrunedDecoder
    from turbo_edge.core.tiny_decoder import load_decoder_variant

    assert isinstance(load_decoder_variant("builtin-student", "pruned"), PrunedDecoder)
    assert isinstance(load_decoder_variant(ALIASES["builtin-student"], "tiny"), TinyDecoder)
    with pytest.raises(ValueError, match=r"builtin has no 'pruned' decoder; it has \['full'\] .*--variant pruned"):
        load_decoder_variant("builtin", "pruned")
