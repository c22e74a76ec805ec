import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from tiny_models import student_unet_forward, student_unet_inputs

from turbo_edge.core import replay
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.prune import importance as imp
from turbo_edge.prune.artifact import load_pruned
from turbo_edge.prune.train import prune
from turbo_edge.spec import plan as plans
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import PruneConfig

# SMALL_SPEC's UNet: block_out_channels (16, 32, 32), layers_per_block 2. Down layer 0 of block 1 widens 16 -> 32,
# so it is the one layer no plan may remove.
TINY_UNITS = [
    "down_blocks.0.layers.0", "down_blocks.0.layers.1", "down_blocks.1.layers.1",
    "down_blocks.2.layers.0", "down_blocks.2.layers.1", "mid_block.layers.1", "mid_block",
]


@pytest.fixture(scope="module")
def student_dir(tiny_student_dir):
    return tiny_student_dir


@pytest.fixture(scope="module")
def student(student_dir):
    return load_teacher(student_dir)


def _cfg(student_dir, out, **kw):
    base = dict(student=str(student_dir), out=str(out), steps=2, batch=2, dataset_clips=8, importance_clips=0,
                log_every=1, checkpoint_every=1, disc_width=16)
    base.update(kw)
    return PruneConfig.make(**base)


def test_removable_units_and_vdmini_plan(student):
    config = replay.base_config(student.unet)
    assert plans.removable_units(config) == TINY_UNITS
    plan = plans.vdmini_plan(config)
    # Keep the deepest down block and the first up block whole; drop each other block's second pair and the mid block.
    assert plan["removed"] == ["down_blocks.0.layers.1", "down_blocks.1.layers.1", "mid_block"]
    assert plan["up_layers_removed"] == ["up_blocks.2.layers.1", "up_blocks.1.layers.1"]
    assert plan["architecture_hash"] == plans.architecture_hash(config) and plan["base_config"] == config


def test_apply_plan_runs_with_fewer_params_and_matches_simulated_removal(student):
    config = replay.base_config(student.unet)
    x, e, w = student_unet_inputs()
    full = student_unet_forward(student.unet, x, e, w)
    n_full = sum(p.numel() for p in student.unet.parameters())
    for unit in TINY_UNITS:
        pruned = replay.apply_plan(copy.deepcopy(student.unet), plans.make_plan(config, [unit], "test"))
        out = student_unet_forward(pruned, x, e, w)
        with imp.simulate_removal(student.unet, imp.components(config, unit)):
            simulated = student_unet_forward(student.unet, x, e, w)
        assert out.shape == full.shape
        assert sum(p.numel() for p in pruned.parameters()) < n_full
        # The surgery is exactly the identity-hook simulation the importance table measures.
        assert torch.equal(out, simulated), unit
        assert (out - full).abs().max().item() > 0, unit
    assert torch.equal(student_unet_forward(student.unet, x, e, w), full)  # the simulation restored every module
    vd = replay.apply_plan(copy.deepcopy(student.unet), plans.vdmini_plan(config))
    assert vd.mid_block is None and [len(b.resnets) for b in vd.down_blocks] == [1, 1, 2]
    assert [len(b.resnets) for b in vd.up_blocks] == [3, 2, 2]
    assert sum(p.numel() for p in vd.parameters()) / n_full == pytest.approx(0.633, abs=0.01)


def test_importance_table_has_a_finite_row_per_unit(student, tmp_path):
    x0 = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = torch.randn(2, 16, 32)
    table = imp.measure_importance(student.unet, student.card.sampler, student.scheduler_config, x0, cond, 2.0, steps=1)
    assert [r["name"] for r in table["units"]] == TINY_UNITS
    for row in table["units"]:
        assert np.isfinite(row["content_cost"]) and np.isfinite(row["motion_cost"]) and row["content_cost"] > 0
        assert row["params"] > 0
    pair = table["units"][1]
    assert set(pair["components"]) == {"down_blocks.0.layers.1", "up_blocks.2.layers.1"}
    assert pair["params"] == sum(c["params"] for c in pair["components"].values())
    assert [lv["level"] for lv in table["by_level"]] == [0, 1, 2, 3]
    path = imp.write_table(table, tmp_path)
    assert json.loads(path.read_text())["units"][0]["name"] == TINY_UNITS[0]
    assert (tmp_path / "importance.md").read_text().count("| **") == len(TINY_UNITS)
    # Removing nothing costs nothing.
    assert imp.clip_costs(x0, x0) == (0.0, 0.0)


@pytest.mark.parametrize(
    "removed, message",
    [
        (["down_blocks.7.layers.0"], "does not have or cannot lose"),
        (["down_blocks.1.layers.0"], "does not have or cannot lose"),  # widening resnet: channels would not match
        (TINY_UNITS[:-2] + ["mid_block"], "everything"),
        (["down_blocks.0.layers.0", "down_blocks.0.layers.1"], "every layer of down block 0"),
        (["mid_block", "mid_block.layers.1"], "name one"),
        ([], "removes nothing"),
    ],
)
def test_bad_plans_are_refused(student, removed, message):
    config = replay.base_config(student.unet)
    plan = {**plans.vdmini_plan(config), "removed": removed}
    with pytest.raises(plans.PlanError, match=message):
        plans.validate_plan(plan, config)


def test_plan_from_another_architecture_fails_before_training(student, student_dir, tiny_t2v_dir, tmp_path):
    other = {**replay.base_config(student.unet), "block_out_channels": [16, 32, 64]}
    plan_file = plans.write_plan(plans.vdmini_plan(other), tmp_path / "other_plan.json")
    out = tmp_path / "run"
    with pytest.raises(plans.PlanError, match="another architecture"):
        prune(_cfg(student_dir, out, plan=str(plan_file)))
    assert not out.exists()  # nothing encoded, nothing trained
    with pytest.raises(ValueError, match="not a consistency student"):
        prune(_cfg(tiny_t2v_dir, out))
    assert not out.exists()


def test_save_load_pruned_round_trip_is_exact(student, tmp_path):
    from turbo_edge.core.pipeline_io import T2VModel
    from turbo_edge.prune.artifact import save_pruned

    plan = plans.vdmini_plan(replay.base_config(student.unet))
    unet = replay.apply_plan(copy.deepcopy(student.unet), plan)
    model = T2VModel(unet, student.vae, student.text_encoder, student.tokenizer, student.scheduler)
    out = save_pruned(model, plan, tmp_path / "pruned", dataclasses.replace(student.card, kind="pruned"))
    loaded = load_pruned(out)
    sa, sb = unet.state_dict(), loaded.unet.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x, e, w = student_unet_inputs()
    assert torch.equal(student_unet_forward(unet, x, e, w), student_unet_forward(loaded.unet, x, e, w))
    # The plain diffusers loader cannot express the pruned shapes: the plan is what makes it loadable.
    broken = {**plan, "removed": ["mid_block"]}
    with pytest.raises(plans.PlanError, match="do not fit"):
        replay.load_pruned_unet(out / "unet", broken)


def test_prune_trains_resumes_exactly_and_round_trips(student, student_dir, tmp_path):
    ref = prune(_cfg(student_dir, tmp_path / "ref", importance_clips=2, importance_steps=1))
    prune(_cfg(student_dir, tmp_path / "run", steps=1))
    run = prune(_cfg(student_dir, tmp_path / "run", steps=2))  # resumed from the step-1 checkpoint
    a, b = load_pruned(ref), load_pruned(run)
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    # Same tolerance as the distillation resume test: kernels may sum in another order after a reload (~1e-7).
    assert sa.keys() == sb.keys() and all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    log = [json.loads(line) for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    for key in ("loss_cd", "loss_icd", "loss_mca_g", "loss_disc"):
        assert all(np.isfinite(r[key]) for r in log), key
    assert (tmp_path / "ref" / "importance.json").is_file() and (tmp_path / "ref" / "importance.md").is_file()
    card = read_card(ref)
    assert card.kind == "pruned" and card.sampler == student.card.sampler and card.lineage.plans == ("pruning_plan.json",)
    assert card.lineage.details["params_pruned"] < card.lineage.details["params_student"]
    assert json.loads((ref / plans.PLAN_FILE).read_text())["removed"] == ["down_blocks.0.layers.1", "down_blocks.1.layers.1", "mid_block"]
    # The exported weights are the final checkpoint's.
    from safetensors.torch import load_file

    final = load_file(str(tmp_path / "ref" / "ckpt" / "step_0000002" / "pruned.safetensors"))
    assert final.keys() == sa.keys() and all(torch.equal(final[k], sa[k]) for k in sa)
    from turbo_edge.core.student_sampling import generate_student

    assert generate_student(a, ["a red circle moving left"], steps=2).shape == (1, 4, 16, 16, 3)


def test_ablation_weights_remove_their_log_terms(student_dir, tmp_path):
    prune(_cfg(student_dir, tmp_path / "abl", steps=1, icd_weight=0.0, mca_weight=0.0))
    (row,) = [json.loads(line) for line in (tmp_path / "abl" / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(row["loss_cd"]) and row["loss"] == pytest.approx(row["loss_cd"])
    assert not {"loss_icd", "loss_mca_g", "loss_disc"} & set(row)


def test_prune_config_validates():
    with pytest.raises(ValueError, match="unknown pruning rule"):
        PruneConfig(rule="random")
    with pytest.raises(ValueError, match="icd_weight"):
        PruneConfig(icd_weight=-1)
    assert PruneConfig.from_dict(PruneConfig(mca_weight=0.0).to_dict()).mca_weight == 0.0
    with pytest.raises(ValueError, match="init_pruned replays that model's own plans"):
        PruneConfig(init_pruned="runs/pruned/pruned", plan="plan.json")
    with pytest.raises(ValueError, match="leave plan unset and channel_ratio 0"):
        PruneConfig(init_pruned="runs/pruned/pruned", channel_ratio=0.25)
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        PruneConfig(rewards=[{"name": "nope", "weight": 1.0}])
    with pytest.raises(ValueError, match="each reward is an object"):
        PruneConfig(rewards=["builtin-image"])
    # Unset, the new fields leave the resume hash that older checkpoints were written with.
    assert not {"rewards", "init_pruned"} & set(PruneConfig().training_hash_fields())
