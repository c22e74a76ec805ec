"""The teacher's own training command at the builtin architecture, a few steps: checkpoints, exact resume,
warm start from a shipped snapshot, and the export into the diffusers layout."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.spec.configs import TeacherTrainConfig
from turbo_edge.teacher.train import export_teacher, run

SMALL = dict(vae_steps=2, vae_batch=8, dataset_clips=8, batch=2, checkpoint_every=1, log_every=1, threads=1, warmup_steps=2)


def _weights(ckdir):
    return load_file(str(ckpt.latest_checkpoint(ckdir) / "model.safetensors"))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "straight"
    run(TeacherTrainConfig(out=str(out), unet_steps=3, **SMALL))
    return out


def test_interrupted_run_resumes_exactly(straight_run, tmp_path):
    out = tmp_path / "resumed"
    run(TeacherTrainConfig(out=str(out), unet_steps=2, **SMALL))  # "killed" after step 2 ...
    run(TeacherTrainConfig(out=str(out), unet_steps=3, **SMALL))  # ... and restarted
    a, b = _weights(straight_run / "unet_ckpt"), _weights(out / "unet_ckpt")
    assert a.keys() == b.keys()
    # Same batches, noise and optimizer state; only float summation order may differ between processes (CPU
    # kernels pick vectorisation by memory alignment), which moves weights by ~1e-7 after a step.
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 2e-6, f"the resumed run drifted {worst:.2e} from the uninterrupted one"
    log = [json.loads(line) for line in (out / "unet_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]


def test_resume_with_another_recipe_is_refused(straight_run, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(straight_run, out)
    with pytest.raises(ValueError, match="config"):
        run(TeacherTrainConfig(out=str(out), unet_steps=4, phases=("unet",), **{**SMALL, "batch": 4}))


def test_export_is_a_loadable_teacher(straight_run, tmp_path):
    from turbo_edge.core.pipeline_io import load_teacher

    model = load_teacher(export_teacher(straight_run, tmp_path / "teacher"))
    assert model.card.kind == "teacher" and model.card.lineage.step == 3 and model.card.lineage.stage == "teacher_train"
    assert model.vae.config.scaling_factor > 0


def test_warm_start_from_the_shipped_teacher(tmp_path):
    from turbo_edge.core.pipeline_io import load_teacher

    shipped = load_teacher("builtin")
    out = tmp_path / "warm"
    cfg = TeacherTrainConfig(out=str(out), unet_steps=1, phases=("unet",), init_from="builtin", lr=1e-12, **SMALL)
    run(cfg)
    # one step at a negligible learning rate: the run continued from the shipped weights, not from scratch
    w = _weights(out / "unet_ckpt")
    ref = shipped.unet.state_dict()
    assert max(float((w[f"unet.{k}"] - ref[k]).abs().max()) for k in ref) < 1e-3
    exported = load_teacher(export_teacher(out, tmp_path / "exported"))
    chain = exported.card.lineage.details
    assert chain["init"]["unet_step"] == shipped.card.lineage.step
    assert chain["unet_step_total"] == 1 + shipped.card.lineage.details.get("unet_step_total", shipped.card.lineage.step)
    # the autoencoder is the shipped one, copied into the run
    assert exported.vae.config.scaling_factor == pytest.approx(shipped.vae.config.scaling_factor)


def test_warm_start_refuses_the_vae_phase():
    with pytest.raises(ValueError, match="--phases unet"):
        TeacherTrainConfig(init_from="builtin", phases=("vae", "unet"))


def test_frozen_text_encoder_stays_at_its_seeded_init(tmp_path):
    import torch

    from turbo_edge.core.models import TinyTeacherSpec, build_text_encoder, build_unet

    out = tmp_path / "frozen"
    run(TeacherTrainConfig(out=str(out), unet_steps=2, train_text_encoder=False, phases=("unet",), init_from="builtin", **SMALL))
    w = _weights(out / "unet_ckpt")
    torch.manual_seed(0)  # the recipe's seed: build order UNet, then text encoder
    build_unet(TinyTeacherSpec())
    fresh = build_text_encoder(TinyTeacherSpec(), 584).state_dict()
    te = {k.removeprefix("text_encoder."): v for k, v in w.items() if k.startswith("text_encoder.")}
    assert te.keys() == fresh.keys()
    assert all(torch.equal(te[k], fresh[k]) for k in te), "a frozen text encoder must keep its seeded initial weights"


def test_redrawn_token_embeddings_keep_the_motion_word_distinct(tmp_path):
    from turbo_edge.core.models import TinyTeacherSpec, build_text_encoder
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import encode_text

    out = tmp_path / "tokens"
    cfg = TeacherTrainConfig(out=str(out), unet_steps=1, train_text_encoder=False, text_token_std=1.0, phases=("unet",), init_from="builtin", **SMALL)
    run(cfg)
    model = load_teacher(export_teacher(out, tmp_path / "exported", half=False))
    assert float(model.text_encoder.get_input_embeddings().weight.std()) == pytest.approx(1.0, abs=0.05)
    left, right = encode_text(model, ["a red circle moving left", "a red circle moving right"])
    at_direction = float((left - right).norm(dim=-1)[5])  # token 5 is the direction word (after BOS)
    assert at_direction > 8.0, at_direction  # CLIP's own 0.02 init gives ~1.7 here (the builtin's encoder)
    model.text_encoder = build_text_encoder(TinyTeacherSpec(), len(model.tokenizer)).eval()  # CLIP's own init
    default_left, default_right = encode_text(model, ["a red circle moving left", "a red circle moving right"])
    assert float((default_left - default_right).norm(dim=-1)[5]) < at_direction / 2
    with pytest.raises(ValueError, match="frozen text encoder"):
        TeacherTrainConfig(text_token_std=1.0)  # the encoder would train away from the draw


def test_unet_phase_trains_on_the_world_data_in_clip_order(straight_run):
    """The UNet phase reads the world through world export -> data prepare, made for the run's own autoencoder:
    row i is world clip i, its latent the autoencoder's (lossless export: float16 storage is all that differs) and
    its caption the clip's prompt. A second read reuses the DATA: no shard is written again."""
    import numpy as np

    from turbo_edge.core import world
    from turbo_edge.core.dataset import encode_latents
    from turbo_edge.core.models import TinyTeacherSpec
    from turbo_edge.core.prepared import read_index
    from turbo_edge.teacher.train import _load_vae, _tokenizer, world_latents

    cfg = TeacherTrainConfig.load(straight_run / "teacher_train_config.json")
    spec = TinyTeacherSpec()
    index = read_index(straight_run / "dataset" / "data")
    assert index["samples"] == 8 and len(index["shards"]) == 8  # one clip a shard: up to 8 ranks read disjoint shares
    assert index["model"]["path"] == str((straight_run / "dataset" / "vae_model").resolve())
    shards = {f: f.stat().st_mtime_ns for f in (straight_run / "dataset" / "data").glob("shard-*.safetensors")}
    vae = _load_vae(cfg, spec)
    latents, captions = world_latents(cfg, spec, vae, _tokenizer(cfg, spec))
    assert {f: f.stat().st_mtime_ns for f in shards} == shards
    attrs, clips = world.batch("train", cfg.seed, range(8))
    direct = encode_latents(vae, clips).numpy()
    assert latents.dtype == np.float16 and latents.shape == direct.shape
    assert float(np.abs(latents.astype(np.float32) - direct).max()) < 4e-3
    assert captions == [a.prompt for a in attrs]


def test_warm_start_prepares_the_world_for_the_init_model(tmp_path):
    from turbo_edge.core.prepared import read_index

    out = tmp_path / "warm_data"
    run(TeacherTrainConfig(out=str(out), unet_steps=1, phases=("unet",), init_from="builtin", **SMALL))
    index = read_index(out / "dataset" / "data")
    assert index["model"]["path"] == str((out / "init").resolve()) and index["samples"] == 8
