"""``loop.read_log`` and ``train_data.audit_read_log``: two ranks simulated in one process read a tiny DATA for two
epochs and the audit finds them disjoint, without repeats and covering each finished epoch but for the dropped
tails; a planted repeat and a sample from another rank's shard are caught; a resumed run's re-read steps count once;
a 1-process distillation writes the log; the world (no sample ids) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from turbo_edge import cli
from turbo_edge.core import train_data
from turbo_edge.core.dataset import prepare
from turbo_edge.core.prepared import PreparedData
from turbo_edge.core.training import mean_over_ranks
from turbo_edge.spec.configs import DataPrepareConfig, DistillConfig, PruneConfig

CLIPS = 13  # 5 shards: 4 of 3, 1 of 1


@pytest.fixture(scope="module")
def odd_data(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    videos = tmp_path_factory.mktemp("world") / "train"
    assert cli.main(["world", "export", "--split", "train", "--num", str(CLIPS), "--out", str(videos), "--seed", "5"]) == 0
    out = tmp_path_factory.mktemp("data") / "odd"
    prepare(DataPrepareConfig(source=str(videos), model=str(tiny_t2v_dir), out=str(out), shard_size=3, batch=4))
    return out


def _simulate(source: train_data.DataSource, out: Path, world_size: int, batch: int, steps: int) -> None:
    for rank in range(world_size):
        reader = source.reader(rank, world_size, batch)
        for step in range(steps):
            train_data.log_read(out, rank, step + 1, reader.next(step))


def test_two_simulated_ranks_read_disjointly_and_cover_each_finished_epoch(odd_data: Path, tmp_path: Path):
    source = train_data.DataSource(PreparedData(odd_data), seed=0)
    assert [s["samples"] for s in source.data.shards] == [3, 3, 3, 3, 1]
    _simulate(source, tmp_path, 2, 2, 6)  # a rank holds 2 or 3 shards: 4 to 9 clips, so 2 to 4 steps an epoch
    logs = train_data.load_read_log(tmp_path)
    audit = train_data.audit_read_log(source, logs, 2)
    # Postcondition: the expected tails, from the shard sizes alone.
    for row in audit["epochs"]:
        sizes = [sum(source.data.shards[k]["samples"] for k in source.data.shard_order(row["epoch"], 0, r, 2)) for r in range(2)]
        assert sum(sizes) == CLIPS
        if row["finished"]:
            assert row["dropped_tail"] == sum(n % 2 for n in sizes) and row["expected"] == CLIPS - row["dropped_tail"]
            assert row["read"] == row["distinct"] == row["expected"] and row["missing"] == 0
    assert audit["finished_epochs"] >= 1 and audit["epochs"][0]["finished"]
    assert audit["no_repeats"] and audit["ranks_disjoint"] and audit["ranks_in_own_shards"] and audit["finished_epochs_covered"]
    assert [len(rank) for rank in logs] == [6, 6] and all(len(r["ids"]) == 2 for rank in logs for r in rank)


def test_audit_catches_a_repeat_and_a_read_from_another_ranks_shard(odd_data: Path, tmp_path: Path):
    source = train_data.DataSource(PreparedData(odd_data), seed=0)
    _simulate(source, tmp_path, 2, 2, 3)
    logs = train_data.load_read_log(tmp_path)
    logs[1][1]["ids"][0] = logs[0][0]["ids"][0]  # rank 1 reads rank 0's first sample of epoch 0
    audit = train_data.audit_read_log(source, logs, 2)
    first = audit["epochs"][0]
    assert first["repeats"] == 1 and first["shared_between_ranks"] == 1 and first["outside_own_shards"] == 1
    assert not audit["no_repeats"] and not audit["ranks_disjoint"] and not audit["ranks_in_own_shards"]
    logs[1][1]["ids"][0] = logs[1][0]["ids"][0]  # a repeat within rank 1 alone
    audit = train_data.audit_read_log(source, logs, 2)
    assert audit["epochs"][0]["repeats"] == 1 and audit["ranks_disjoint"] and audit["ranks_in_own_shards"] and not audit["no_repeats"]
    with pytest.raises(ValueError, match="batch of 3"):
        train_data.audit_read_log(source, logs, 3)


def test_a_resumed_runs_re_read_steps_count_once(odd_data: Path, tmp_path: Path):
    source = train_data.DataSource(PreparedData(odd_data), seed=0)
    _simulate(source, tmp_path, 1, 4, 3)
    reader = source.reader(0, 1, 4, resume={"step": 2, **source.reader(0, 1, 4).checkpoint_state(2)})
    train_data.log_read(tmp_path, 0, 3, reader.next(2))  # killed after logging step 3, resumed from the step-2 checkpoint
    lines = train_data.read_log_path(tmp_path, 0).read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[2]) == json.loads(lines[3])
    logs = train_data.load_read_log(tmp_path)
    assert [r["step"] for r in logs[0]] == [1, 2, 3]
    audit = train_data.audit_read_log(source, logs, 4)
    assert audit["epochs"][0] == {"epoch": 0, "finished": True, "read": 12, "distinct": 12, "repeats": 0, "shared_between_ranks": 0,
                                  "outside_own_shards": 0, "expected": 12, "dropped_tail": 1, "missing": 0}


def test_distill_writes_the_read_log_and_logs_one_process_loss_unchanged(odd_data: Path, tiny_t2v_dir: Path, tmp_path: Path):
    from turbo_edge.distill.train import train

    cfg = DistillConfig.make(teacher=str(tiny_t2v_dir), out=str(tmp_path / "run"), steps=4, batch=4, log_every=1, checkpoint_every=4,
                             lora_rank=4, w_embedding_dim=8, data=str(odd_data), read_log=True)
    train(cfg)
    logs = train_data.load_read_log(tmp_path / "run")
    assert [r["step"] for r in logs[0]] == [1, 2, 3, 4] and [r["epoch"] for r in logs[0]] == [0, 0, 0, 1]
    audit = train_data.audit_read_log(train_data.DataSource(PreparedData(odd_data), seed=0), logs, 4)
    assert audit["finished_epochs"] == 1 and audit["no_repeats"] and audit["finished_epochs_covered"]
    assert cfg.training_hash_fields() == cfg.replace(read_log=False).training_hash_fields()  # resumable either way


def test_read_log_takes_the_world_too_and_one_process_metrics_pass_through():
    assert DistillConfig.make(read_log=True).loop.read_log and PruneConfig.make(read_log=True).loop.read_log  # the world is a DATA
    metrics = {"loss": 0.25, "loss_cd": 0.2, "motion_energy": 3.0}
    assert mean_over_ranks(None, metrics) is metrics
