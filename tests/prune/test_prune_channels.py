"""Channel pruning (torch-pruning) as a replayable plan: widths, exactness, replay, save/load, composition with
block plans, ONNX export, recovery training, bad plans, config and CLI."""

import collections
import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import student_unet_forward, student_unet_inputs

from turbo_edge import cli
from turbo_edge.core import replay
from turbo_edge.core.pipeline_io import T2VModel, load_teacher
from turbo_edge.prune import channels
from turbo_edge.prune.artifact import load_pruned, save_pruned
from turbo_edge.prune.losses import FeatureTap, matched_layers
from turbo_edge.prune.train import prune
from turbo_edge.spec import plan as plans
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import PruneConfig

# SMALL_SPEC's UNet: 17 resnets and 17 temporal convs (3 internal widths each) feed GroupNorms; 23 transformers
# (spatial, temporal, transformer_in) have self- and cross-attention and one GEGLU feed-forward each.
KINDS = {"norm_groups": 17 + 3 * 17, "heads": 2 * 23, "gated_pairs": 23}


@pytest.fixture(scope="module")
def student(tiny_student_dir):
    return load_teacher(tiny_student_dir)


@pytest.fixture(scope="module")
def noisy_unet(student):
    """The student's UNet with every weight perturbed: diffusers zero-initialises the temporal convs' last layer,
    which would make cutting their channels trivially exact."""
    unet = copy.deepcopy(student.unet).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return unet


@pytest.fixture(scope="module")
def halved(noisy_unet):
    """torch-pruning's own pruned copy at ratio 0.5 and its plan."""
    return channels.channel_prune(noisy_unet, 0.5)


def _params(unet):
    return sum(p.numel() for p in unet.parameters())


def test_channel_plan_prunes_internal_widths_in_whole_units(noisy_unet, halved):
    pruned, plan = halved
    assert collections.Counter(g["kind"] for g in plan["groups"]) == KINDS
    assert plan["kind"] == "channel_pruning_plan" and plan["ratio"] == 0.5 and plan["importance"] == "magnitude"
    assert plan["architecture_hash"] == plans.architecture_hash(replay.base_config(noisy_unet)) and plan["after_blocks"] == []
    for g in plan["groups"]:  # floor(ratio * units) whole units per group
        assert len(g["removed_units"]) == g["units"] // 2 and g["units"] >= 2
    # Halving every internal width removes 47 % of the parameters; streams (conv_in/out, proj_in/out, shortcuts) stay.
    assert plan["params"] == {"before": _params(noisy_unet), "after": _params(pruned)}
    assert plan["params"]["after"] / plan["params"]["before"] == pytest.approx(0.528, abs=0.01)
    originals = dict(noisy_unet.named_modules())
    for name, m in pruned.named_modules():
        orig = originals[name]
        if isinstance(m, torch.nn.GroupNorm):  # whole groups went: the group size stays, the count divides
            assert m.num_channels % m.num_groups == 0 and m.num_channels // m.num_groups == orig.num_channels // orig.num_groups
            assert m.num_groups in (orig.num_groups, orig.num_groups // 2)
        if type(m).__name__ == "Attention":  # whole heads went: head_dim stays
            assert m.heads == orig.heads // 2 and m.to_q.out_features == m.inner_dim == orig.inner_dim // 2
    # Block outputs (what skips, ICD and MCA see) keep their width and resolution.
    x, e, w = student_unet_inputs()
    taps = [FeatureTap(u, matched_layers(u)) for u in (noisy_unet, pruned)]
    assert student_unet_forward(pruned, x, e, w).shape == student_unet_forward(noisy_unet, x, e, w).shape == x.shape
    assert {k: v.shape for k, v in taps[0].features.items()} == {k: v.shape for k, v in taps[1].features.items()}
    for t in taps:
        t.close()


def test_pruned_unet_is_the_unpruned_one_with_removed_channels_cut(noisy_unet, halved):
    """Whole norm groups, whole heads and paired GEGLU halves: every kept channel computes what it did, so cutting
    the removed channels' consumer weights in the unpruned UNet gives the pruned UNet's output."""
    pruned, plan = halved
    cut = copy.deepcopy(noisy_unet)
    modules = dict(cut.named_modules())
    with torch.no_grad():
        for g in plan["groups"]:
            for layer in g["layers"]:
                if layer["dim"] == "in":
                    removed = sorted(set(range(layer["size"])) - set(layer["kept"]))
                    modules[layer["name"]].weight[:, removed] = 0
    x, e, w = student_unet_inputs()
    out = student_unet_forward(pruned, x, e, w)
    assert (out - student_unet_forward(cut, x, e, w)).abs().max().item() < 1e-5  # measured 1.5e-6
    assert (out - student_unet_forward(noisy_unet, x, e, w)).abs().max().item() > 0.1  # and the pruning did change the function


def test_replay_equals_torch_pruning_and_leaves_the_source_alone(noisy_unet, halved):
    pruned, plan = halved
    before = _params(noisy_unet)
    replayed = replay.apply_channel_plan(copy.deepcopy(noisy_unet), plan)
    assert _params(noisy_unet) == before  # channel_prune worked on a copy
    sa, sb = pruned.state_dict(), replayed.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x, e, w = student_unet_inputs()
    assert torch.equal(student_unet_forward(pruned, x, e, w), student_unet_forward(replayed, x, e, w))
    assert plans.channel_plan_id(plan) == plans.channel_plan_id(json.loads(json.dumps(plan)))


def _save(student, unet, out, block=None, chan=None):
    model = T2VModel(unet, student.vae, student.text_encoder, student.tokenizer, student.scheduler)
    return save_pruned(model, block, out, dataclasses.replace(student.card, kind="pruned"), channel_plan=chan)


@pytest.fixture(scope="module")
def halved_dir(student, halved, tmp_path_factory):
    """``halved`` saved as a pruned directory: the student's layout + channel_plan.json, no block plan."""
    return _save(student, halved[0], tmp_path_factory.mktemp("pruned") / "halved", chan=halved[1])


def test_save_load_by_replay_is_exact_channel_only(halved, halved_dir):
    unet, plan = halved
    assert (halved_dir / plans.CHANNEL_PLAN_FILE).is_file() and not (halved_dir / plans.PLAN_FILE).is_file()
    assert plans.read_plan(halved_dir / plans.CHANNEL_PLAN_FILE) == plan
    x, e, w = student_unet_inputs()
    ref = student_unet_forward(unet, x, e, w)
    for loaded in (load_teacher(halved_dir).unet, load_pruned(halved_dir).unet):
        assert _params(loaded) == _params(unet)
        assert (student_unet_forward(loaded, x, e, w) - ref).abs().max().item() <= 1e-6


@pytest.fixture(scope="module")
def composed(student, tmp_path_factory):
    """VDMini's block plan, then a quarter of the remaining internal widths; saved with both plans."""
    block = plans.vdmini_plan(replay.base_config(student.unet))
    blocks = replay.apply_plan(copy.deepcopy(student.unet), block)
    unet, plan = channels.channel_prune(blocks, 0.25, block_plan=block)
    out = _save(student, unet, tmp_path_factory.mktemp("pruned") / "composed", block=block, chan=plan)
    return unet, block, plan, out


def test_block_then_channel_plans_compose_and_load(student, composed, tmp_path):
    unet, block, plan, out = composed
    assert plan["after_blocks"] == block["removed"]
    # VDMini keeps 63 % of the parameters; a quarter of the remaining internal widths takes it to 50 %.
    assert _params(unet) / _params(student.unet) == pytest.approx(0.50, abs=0.02)
    loaded = load_teacher(out).unet
    assert loaded.mid_block is None and [len(b.resnets) for b in loaded.down_blocks] == [1, 1, 2]
    x, e, w = student_unet_inputs()
    assert (student_unet_forward(loaded, x, e, w) - student_unet_forward(unet, x, e, w)).abs().max().item() <= 1e-6
    # The channel plan names post-surgery layers: without its block plan it cannot be replayed.
    shutil.copytree(out, tmp_path / "no_block_plan")
    (tmp_path / "no_block_plan" / plans.PLAN_FILE).unlink()
    with pytest.raises(Exception, match="after removing blocks"):
        load_teacher(tmp_path / "no_block_plan")


def test_channel_pruned_model_exports_to_onnx_with_parity(composed, tmp_path):
    """The block + channel pruned directory through the exporter's UNet contract and TorchScript export, one ORT run
    (bundle-level gates run three profile points; the block-pruned half keeps the graph, and this test, smaller)."""
    from turbo_edge.export.contracts import ExportShapes, build_components
    from turbo_edge.export.onnx_export import export_onnx, run_ort, run_torch

    unet, _, _, out = composed
    contract, module = build_components(load_teacher(out), ExportShapes(4, 16, 16), ("unet",))["unet"]
    assert [t.name for t in contract.inputs] == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    export_onnx(module, contract, tmp_path / "unet.onnx")
    x, e, w = student_unet_inputs(1)
    feeds = {"sample": x.numpy(), "timestep": np.array([300.0], np.float32), "encoder_hidden_states": e.numpy(), "timestep_cond": w.numpy()}
    got = next(iter(run_ort(tmp_path / "unet.onnx", feeds).values()))
    assert got.shape == (1, 4, 4, 8, 8)
    assert np.abs(got - next(iter(run_torch(module, contract, feeds).values()))).max() < 1e-4
    assert np.abs(got - student_unet_forward(unet, x, e, w).numpy()).max() < 1e-4


@pytest.mark.parametrize("case, message", [
    ("architecture", "another architecture"),
    ("ratio", r"\(0, 1\)"),
    ("missing_layer", "does not have"),
    ("wrong_width", "expects"),
    ("partial_norm_group", "whole number of its groups"),
    ("split_head", "not equal whole heads"),
    ("blocks", "after removing blocks"),
    ("kind", "not a channel pruning plan"),
])
def test_bad_channel_plans_are_refused_before_any_weight_changes(noisy_unet, halved, case, message):
    plan = copy.deepcopy(halved[1])
    if case == "architecture":
        other = {**plan["base_config"], "block_out_channels": [16, 32, 64]}
        plan.update(base_config=other, architecture_hash=plans.architecture_hash(other))
    elif case == "ratio":
        plan["ratio"] = 1.5
    elif case == "missing_layer":
        plan["groups"][-1]["layers"][-1]["name"] = "down_blocks.9.resnets.0.conv1"
    elif case == "wrong_width":
        plan["groups"][-1]["layers"][-1]["size"] += 1
    elif case == "partial_norm_group":
        next(lay for g in plan["groups"] for lay in g["layers"] if lay["name"].endswith("norm2"))["kept"].pop()
    elif case == "split_head":
        next(lay for g in plan["groups"] for lay in g["layers"] if lay["name"].endswith("attn1.to_q"))["kept"].pop()
    elif case == "blocks":
        plan["after_blocks"] = ["mid_block"]
    elif case == "kind":
        plan["kind"] = "pruning_plan"
    unet = copy.deepcopy(noisy_unet)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    with pytest.raises(plans.PlanError, match=message):
        replay.apply_channel_plan(unet, plan)
    after = unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 2])
def test_ratio_outside_zero_one_is_refused(noisy_unet, ratio):
    with pytest.raises(plans.PlanError, match=r"\(0, 1\)"):
        channels.make_channel_plan(noisy_unet, ratio)


@pytest.mark.parametrize("rule, removed, kept", [
    # VDMini keeps 63 % of the parameters; halving the internal widths of what is left keeps about half of that.
    ("vdmini", ["down_blocks.0.layers.1", "down_blocks.1.layers.1", "mid_block"], 0.33),
    ("none", None, 0.53),  # channel pruning alone (no pruning_plan.json)
])
def test_prune_trains_a_channel_pruned_student(tiny_student_dir, tmp_path, rule, removed, kept):
    cfg = PruneConfig.make(student=str(tiny_student_dir), out=str(tmp_path / "run"), steps=1, batch=2, dataset_clips=8, rule=rule,
                      importance_clips=0, log_every=1, checkpoint_every=1, disc_width=16, channel_ratio=0.5)
    out = prune(cfg)
    block, chan = plans.read_plans(out)
    assert (block["removed"] if block else None) == removed
    assert chan["after_blocks"] == (removed or []) and chan["ratio"] == 0.5
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for key in ("loss_cd", "loss_icd", "loss_mca_g", "loss_disc"):  # ICD and MCA still match block outputs
        assert np.isfinite(row[key]), key
    meta = read_card(out).lineage.details
    loaded = load_teacher(out)
    assert meta["params_pruned"] == _params(loaded.unet) and meta["channel_groups"] == len(chan["groups"])
    assert meta["params_pruned"] / meta["params_student"] == pytest.approx(kept, abs=0.03)
    # The trained weights are the final checkpoint's, in the architecture the plans rebuild.
    from safetensors.torch import load_file

    final = load_file(str(tmp_path / "run" / "ckpt" / "step_0000001" / "pruned.safetensors"))
    sd = loaded.unet.state_dict()
    assert final.keys() == sd.keys() and all(torch.equal(final[k], sd[k]) for k in sd)


def test_config_and_cli(capsys):
    assert all(channels._importance(name) is not None for name in plans.UNET_CHANNEL_IMPORTANCES)  # every UNet name the config takes works
    with pytest.raises(plans.PlanError, match="measures a DiT's heads"):
        channels._importance("activation")
    with pytest.raises(ValueError, match="unknown channel importance"):
        PruneConfig(channel_importance="taylor")
    for ratio in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"channel_ratio must be in \[0, 1\)"):
            PruneConfig(channel_ratio=ratio)
    with pytest.raises(ValueError, match="removes no blocks"):
        PruneConfig(rule="none")
    # Off, the checkpoint hash fields are what they were before channel pruning existed (old runs still resume).
    assert not {"channel_ratio", "channel_importance"} & set(PruneConfig().training_hash_fields())
    assert PruneConfig(channel_ratio=0.25).training_hash_fields()["channel_ratio"] == 0.25
    assert cli.main(["prune", "--rule", "none", "--channel-ratio", "0.25", "--channel-importance", "l1", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["rule"], cfg["channel_ratio"], cfg["channel_importance"]) == ("none", 0.25, "l1")
    assert cli.main(["prune", "--channel-ratio", "1.5", "--dry-run"]) == 2
