"""``--data DATA`` on distill and prune recovery (``core.train_data``): a DATA made by ``world export`` + ``data prepare``
for the tiny teacher trains; one made for another model is refused; every rank reads a disjoint share; a resumed
reader (and a resumed distillation) sees exactly the batches of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge import cli
from turbo_edge.core import train_data
from turbo_edge.core.dataset import prepare
from turbo_edge.core.prepared import Position, PreparedData
from turbo_edge.spec.configs import DataPrepareConfig, DistillConfig, PruneConfig

CLIPS = 12


@pytest.fixture(scope="module")
def world_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "train"
    assert cli.main(["world", "export", "--split", "train", "--num", str(CLIPS), "--out", str(out), "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_data(world_videos: Path, tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 world clips for the tiny teacher (4 frames of 16x16) in 6 shards of 2."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(DataPrepareConfig(source=str(world_videos), model=str(tiny_t2v_dir), out=str(out), shard_size=2, batch=4))
    return out


@pytest.fixture(scope="module")
def builtin_data(world_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "builtin"
    assert cli.main(["data", "prepare", "--source", str(world_videos), "--model", "builtin", "--out", str(out), "--shard-size", "6"]) == 0
    return out


def _stream(source: train_data.DataSource, rank: int, world_size: int, batch: int, steps: int, resume: dict | None = None) -> list[list[str]]:
    reader = source.reader(rank, world_size, batch, resume=resume)
    return [reader.next(step).prompts for step in range(steps)]


def _sources(source: train_data.DataSource, rank: int, world_size: int, batch: int, steps: int) -> list[str]:
    it = source.data.batches(batch, rank=rank, world_size=world_size, seed=source.seed, epochs=None, drop_last=True)
    return [s for _ in range(steps) for s in next(it).sources]


def test_reader_resumes_exactly_from_its_checkpoint_state(tiny_data: Path):
    source = train_data.DataSource(PreparedData(tiny_data), seed=3)
    whole = _stream(source, 0, 1, 5, 9)  # 12 clips, batches of 5: 2 per epoch, so 9 steps cross four epoch boundaries
    reader = source.reader(0, 1, 5)
    first = [reader.next(step).prompts for step in range(4)]
    state = {"step": 4, **reader.checkpoint_state(4)}
    assert state["data"]["positions"] == [{"epoch": 1, "shard": 5, "offset": 0}]  # clips 5-9 of epoch 1 end shard 4
    resumed = source.reader(0, 1, 5, resume=json.loads(json.dumps(state)))  # through JSON, as state.json stores it
    rest = [resumed.next(step).prompts for step in range(4, 9)]
    assert first + rest == whole
    assert state["data"]["world_size"] == 1 and state["data"]["batch"] == 5 and state["data"]["samples"] == CLIPS


def test_positions_after_match_every_batch_the_reader_yields(tiny_data: Path):
    source = train_data.DataSource(PreparedData(tiny_data), seed=1)
    for world_size, batch in ((1, 5), (2, 2), (3, 1)):
        for rank in range(world_size):
            it = source.data.batches(batch, rank=rank, world_size=world_size, seed=1, epochs=None, drop_last=True)
            carried = [next(it).position for _ in range(7)]
            computed = [source._position_after(k + 1, rank, world_size, batch) for k in range(7)]
            assert carried == computed, (world_size, rank)
    assert source.positions_after(0, 2, 2) == [Position(), Position()]


def test_two_ranks_read_disjoint_shares_and_resume_each_from_its_own_position(tiny_data: Path):
    source = train_data.DataSource(PreparedData(tiny_data), seed=0)
    # 6 shards of 2 clips, 2 ranks, 3 clips per step: one full batch per rank per epoch (its 6 clips in 2 steps)
    ranks = [_sources(source, r, 2, 3, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert not set(ranks[0]) & set(ranks[1]) and len(set(ranks[0]) | set(ranks[1])) == CLIPS  # disjoint, all clips
    # Rank 0 writes every rank's position; each rank resumes from its own and continues its own stream.
    state = {"step": 3, **source.reader(0, 2, 3).checkpoint_state(3)}
    for rank in range(2):
        whole = _stream(source, rank, 2, 3, 7)
        assert _stream(source, rank, 2, 3, 4, resume=state) == whole[3:]


def test_mixed_shards_shuffle_together_read_each_clip_once_and_resume_exactly(tiny_data: Path):
    """``mix_shards`` 3: a rank reads its shards three at a time, their clips shuffled as one: a batch draws from
    several shards, an epoch still reads every clip once, the computed positions are the ones the batches carry, and
    a resume continues the stream exactly; a checkpoint read with another mix is refused."""
    data = PreparedData(tiny_data)
    source = train_data.DataSource(data, seed=2, mix=3)
    batches = list(data.batches(4, seed=2, mix=3, epochs=2, drop_last=True))
    for epoch in range(2):
        ids = [i for b in batches if b.position.epoch == epoch for i in b.ids]
        assert len(ids) == CLIPS and len(set(ids)) == CLIPS
    assert max(len({k for k, _ in b.ids}) for b in batches) >= 2  # one shard holds 2 clips: a batch of 4 spans shards
    plain = list(data.batches(4, seed=2, epochs=1))
    assert [b.ids for b in batches[:3]] != [b.ids for b in plain]
    for world_size, batch in ((1, 5), (2, 2)):
        for rank in range(world_size):
            it = data.batches(batch, rank=rank, world_size=world_size, seed=2, epochs=None, drop_last=True, mix=3)
            assert [next(it).position for _ in range(7)] == [source._position_after(k + 1, rank, world_size, batch) for k in range(7)]
    whole = _stream(source, 0, 1, 5, 7)
    state = json.loads(json.dumps({"step": 3, **source.reader(0, 1, 5).checkpoint_state(3)}))
    assert state["data"]["mix_shards"] == 3 and state["data"]["positions"][0]["shard"] % 3 == 0
    assert _stream(source, 0, 1, 5, 4, resume=state) == whole[3:]
    with pytest.raises(ValueError, match=r"mix_shards 3 \(now 1\)"):
        train_data.DataSource(data, seed=2).reader(0, 1, 5, resume=state)
    with pytest.raises(ValueError, match="not at the start of a group of 3 shards"):
        next(data.batches(4, seed=2, mix=3, start=Position(0, 1, 0)))


def test_mix_of_one_is_the_plain_stream(tiny_data: Path):
    data = PreparedData(tiny_data)
    assert [b.ids for b in data.batches(5, seed=4, epochs=2)] == [b.ids for b in data.batches(5, seed=4, epochs=2, mix=1)]
    state = {"step": 2, **train_data.DataSource(data, seed=4).reader(0, 1, 5).checkpoint_state(2)}
    del state["data"]["mix_shards"]  # a checkpoint written before mix_shards existed resumes as mix 1
    assert _stream(train_data.DataSource(data, seed=4), 0, 1, 5, 1, resume=state) == _stream(train_data.DataSource(data, seed=4), 0, 1, 5, 3)[2:]


def test_resume_refuses_other_data_settings_and_the_world(tiny_data: Path):
    source = train_data.DataSource(PreparedData(tiny_data), seed=0)
    state = {"step": 2, **source.reader(0, 1, 2).checkpoint_state(2)}
    with pytest.raises(ValueError, match=r"world_size 1 \(now 2\)"):
        source.reader(0, 2, 2, resume=state)
    with pytest.raises(ValueError, match="records no data positions"):
        source.reader(0, 1, 2, resume={"step": 2})
    with pytest.raises(ValueError, match="under one batch of 7"):
        source.reader(0, 2, 7)


def test_distill_on_data_trains_and_resumes_exactly(tiny_data: Path, tiny_t2v_dir: Path, tmp_path: Path):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.distill.train import train

    def cfg(out: Path, steps: int) -> DistillConfig:
        return DistillConfig.make(teacher=str(tiny_t2v_dir), out=str(out), steps=steps, batch=4, checkpoint_every=1, log_every=1,
                                  lora_rank=4, w_embedding_dim=8, data=str(tiny_data))

    ref = train(cfg(tmp_path / "ref", 4))  # 12 clips, 4 per step: crosses an epoch boundary at step 3
    log = [json.loads(line) for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    assert not (tmp_path / "ref" / "data").exists()  # the world was never encoded
    state = json.loads(sorted((tmp_path / "ref" / "ckpt").glob("step_*"))[-1].joinpath("state.json").read_text())
    assert state["data"]["positions"] == [{"epoch": 1, "shard": 2, "offset": 0}]  # step 4: epoch 1's first 4 clips, shards 0-1
    train(cfg(tmp_path / "run", 2))
    run = train(cfg(tmp_path / "run", 4))  # resumed at step 2
    a, b = load_teacher(ref), load_teacher(run)
    for (k, va), vb in zip(a.unet.state_dict().items(), b.unet.state_dict().values()):
        assert torch.equal(va, vb), k
    card = json.loads((ref / "turbo_edge.json").read_text())
    assert card["lineage"]["config"]["data"] == str(tiny_data)


def test_distill_refuses_data_made_for_another_model(builtin_data: Path, tiny_t2v_dir: Path, tmp_path: Path, capsys):
    code = cli.main(["distill", "--teacher", str(tiny_t2v_dir), "--out", str(tmp_path / "run"), "--data", str(builtin_data),
                     "--steps", "1", "--batch", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--model {tiny_t2v_dir} --out NEW_DATA" in err and "was prepared with model" in err
    assert not (tmp_path / "run" / "ckpt").exists()


def test_refusal_names_the_prepare_command(builtin_data: Path, tiny_t2v_dir: Path):
    with pytest.raises(ValueError) as info:
        train_data.load_checked(builtin_data, tiny_t2v_dir)
    message = str(info.value)
    assert "\n" not in message and "turbo-edge data prepare --source" in message and f"--model {tiny_t2v_dir}" in message
    assert "fingerprint" in message


def test_prune_recovers_one_step_on_data(tiny_data: Path, tiny_student_dir: Path, tmp_path: Path):
    from turbo_edge.prune.train import prune

    out = prune(PruneConfig.make(student=str(tiny_student_dir), out=str(tmp_path / "pruned"), steps=1, batch=2, importance_clips=3,
                                 data=str(tiny_data), log_every=1, checkpoint_every=1))
    log = [json.loads(line) for line in (tmp_path / "pruned" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and np.isfinite(log[0]["loss"])
    table = json.loads((tmp_path / "pruned" / "importance.json").read_text())
    assert table["settings"]["clips"] == 3 and table["settings"]["samples"] == CLIPS  # measured on the DATA's clips
    assert (out / "pruning_plan.json").is_file() and not (tmp_path / "pruned" / "data").exists()


def test_latent_reward_trains_on_data_latents_and_image_reward_refuses_data(tiny_data: Path, builtin_data: Path, tiny_t2v_dir: Path):
    from turbo_edge.core.rewards.latent import prepared_clips
    from turbo_edge.core.rewards.train import train_latent
    from turbo_edge.spec.configs import RewardTrainConfig

    data = PreparedData(tiny_data)
    clips, pool = prepared_clips(data)
    z, prompts = clips(1, 4)  # spans shards 0-2 (shards of 2)
    shards = [data.load_shard(k) for k in range(3)]
    assert torch.equal(z, torch.cat([s.latents for s in shards])[1:5].float().transpose(1, 2))
    assert prompts == [c for s in shards for c in s.captions][1:5] and len(pool) == len(set(pool)) <= CLIPS
    cfg = RewardTrainConfig(which="latent", teacher=str(tiny_t2v_dir), data=str(tiny_data), target="motion", steps=3, batch=4,
                            samples=CLIPS, x0_fraction=0.0, width=8)
    model, metrics = train_latent(cfg, progress=False)
    assert metrics["samples"] == CLIPS and np.isfinite(metrics["final_loss"]) and model.cfg.latent_channels == 4
    with pytest.raises(ValueError, match="fewer than --samples 13"):
        train_latent(cfg.replace(samples=CLIPS + 1), progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        train_latent(cfg.replace(data=str(builtin_data)), progress=False)
    with pytest.raises(ValueError, match="builtin-image reward trains on the world's rendered pixels"):
        RewardTrainConfig(which="image", data=str(tiny_data))


def test_distill_builtin_teacher_two_steps_on_builtin_data(builtin_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert cli.main(["distill", "--data", str(builtin_data), "--out", str(out), "--steps", "2", "--batch", "2", "--log-every", "1"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) and 0 < r["loss"] < 1 for r in log)
    assert (out / "student" / "turbo_edge.json").is_file() and not (out / "data").exists()
