"""Head / FFN plans for a Wan transformer (diffusers' Wan test configuration: 2 heads x 12, FFN 32, 2 blocks): making
one, replaying it, the across-heads q / k norm, the config widths the loader builds from, and bad plans."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge.core import dit_replay
from turbo_edge.core.denoiser import WanFamily, call_denoiser
from turbo_edge.core.pipeline_io import T2VModel, load_teacher
from turbo_edge.prune.dit_widths import head_ffn_prune, make_head_ffn_plan
from turbo_edge.spec import plan as plans
from turbo_edge.spec.errors import ModelLayoutError, PlanError
from turbo_edge.spec.sampler import SamplerSpec


@pytest.fixture(scope="module")
def wan(wan_test_dir: Path):
    return load_teacher(wan_test_dir)


@pytest.fixture(scope="module")
def student(wan):
    return WanFamily().build_student(wan.unet, 8).eval()


def _calls(n: int = 2, guidance: bool = True, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"sample": torch.randn(2, 16, 3, 4, 4, generator=g), "timestep": torch.tensor([700.0, 200.0]),
             "text": torch.randn(2, 5, 32, generator=g), "guidance": torch.randn(2, 8, generator=g) if guidance else None} for _ in range(n)]


def _out(module, call) -> torch.Tensor:
    with torch.no_grad():
        return call_denoiser(module, call["sample"], call["timestep"], call["text"], call.get("guidance"))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_a_plan_keeps_the_output_shape_counts_its_parameters_and_replays_to_identical_weights(student):
    plan = make_head_ffn_plan(student, 0.5, _calls())
    plan = json.loads(json.dumps(plan))  # what a plan file holds
    pruned = head_ffn_prune(student, plan)
    again = dit_replay.apply_head_ffn_plan(copy.deepcopy(student), plan)
    a, b = pruned.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    call = _calls(1, seed=5)[0]
    assert _out(pruned, call).shape == call["sample"].shape
    # 1 of 2 heads in each attention and 16 of 32 FFN channels per block; the count the plan states is the model's.
    assert plan["params"] == {"before": _count(student), "after": _count(pruned)}
    per_head = 4 * 24 * 12 + 5 * 12  # q / k / v rows with bias, to_out columns, two norm slices
    assert _count(student) - _count(pruned) == 2 * (2 * per_head + 16 * (2 * 24 + 1))
    for block in pruned.blocks:
        assert (block.attn1.heads, block.attn2.heads, block.attn1.inner_dim, block.ffn.net[0].proj.out_features) == (1, 1, 12, 16)
        assert tuple(block.attn1.norm_q.normalized_shape) == (12,)
    assert pruned.config[plans.WIDTH_KEY] == [{"attn1_heads": 1, "attn2_heads": 1, "ffn_dim": 16}] * 2
    assert plans.WIDTH_KEY not in student.config  # the original is left as it was
    assert plan["ffn_group"] == ["ffn.net.0.proj (out)", "ffn.net.2 (in)"] and plan["torch_pruning"]


def test_activation_importance_is_what_removing_the_head_takes_from_the_attention_output(student):
    """For one attention, a head's measured importance equals sum_t ||attn_out(all heads) - attn_out(head cut)||^2."""
    calls = _calls()
    plan = make_head_ffn_plan(student, 0.5, calls)

    def attn_out(model) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        hook = model.blocks[1].attn2.register_forward_hook(lambda _m, _a, out: outs.append(out.double()))
        try:
            for c in calls:
                _out(model, c)
        finally:
            hook.remove()
        return torch.cat([o.reshape(-1, o.shape[-1]) for o in outs])

    full = attn_out(student)
    for h in range(2):
        cut = copy.deepcopy(student)
        with torch.no_grad():
            cut.blocks[1].attn2.to_out[0].weight[:, 12 * h : 12 * (h + 1)] = 0
        delta = full - attn_out(cut)
        assert plan["blocks"][1]["attn2"]["importance"][h] == pytest.approx(float(delta.pow(2).sum()), rel=1e-4)
    imp = plan["blocks"][1]["attn2"]["importance"]
    assert plan["blocks"][1]["attn2"]["kept_heads"] == [int(np.argmax(imp))]


def test_the_norm_factor_is_exact_where_the_removed_heads_carry_no_energy(wan):
    """Wan's norm_q / norm_k divide by the RMS over all heads. Where the removed heads' q / k are zero (and their output
    and the removed FFN channels' too), the pruned model with the plan's factor is the unpruned one; without it, it is not."""
    model = copy.deepcopy(wan.unet).eval()
    with torch.no_grad():
        for block in model.blocks:
            for attn in (block.attn1, block.attn2):
                for proj in (attn.to_q, attn.to_k):
                    proj.weight[12:] = 0
                    proj.bias[12:] = 0
                attn.to_out[0].weight[:, 12:] = 0
            block.ffn.net[2].weight[:, :16] = 0
    calls = _calls(guidance=False)
    plan = make_head_ffn_plan(model, 0.5, calls)
    for entry in plan["blocks"]:
        assert entry["attn1"]["kept_heads"] == [0] and entry["attn2"]["kept_heads"] == [0] and entry["ffn"]["kept"] == list(range(16, 32))
        for attn in ("attn1", "attn2"):  # rms over 1 of 2 heads = sqrt(2) x rms over both (up to RMSNorm's eps)
            assert entry[attn]["norm_q_scale"] == pytest.approx(math.sqrt(2), rel=1e-4)
            assert entry[attn]["norm_k_scale"] == pytest.approx(math.sqrt(2), rel=1e-4)
    call = _calls(1, guidance=False, seed=3)[0]
    ref = _out(model, call)
    torch.testing.assert_close(_out(head_ffn_prune(model, plan), call), ref, atol=2e-5, rtol=1e-4)
    unscaled = copy.deepcopy(plan)
    for entry in unscaled["blocks"]:
        for attn in ("attn1", "attn2"):
            entry[attn]["norm_q_scale"] = entry[attn]["norm_k_scale"] = 1.0
    assert (_out(head_ffn_prune(model, unscaled), call) - ref).abs().max() > 1e-3


def test_importances_are_seeded_and_named(student):
    calls = _calls()
    a, b = (make_head_ffn_plan(student, 0.5, calls, importance="random", seed=s) for s in (0, 0))
    assert a["blocks"] == b["blocks"]
    for name in ("magnitude", "l1"):
        plan = make_head_ffn_plan(student, 0.5, calls, importance=name)
        plans.validate_head_ffn_plan(plan, dit_replay.base_config(student))
    with pytest.raises(PlanError, match="unknown importance"):
        make_head_ffn_plan(student, 0.5, calls, importance="taylor")
    with pytest.raises(PlanError, match="at least one"):
        make_head_ffn_plan(student, 0.5, [])
    with pytest.raises(PlanError, match="removes nothing"):
        make_head_ffn_plan(student, 0.01, calls)


def _save_pruned(student, wan, block_plan, plan, out: Path) -> Path:
    from turbo_edge.prune.artifact import save_pruned

    module = copy.deepcopy(student)
    if block_plan is not None:
        WanFamily().apply_plan(module, block_plan)
    dit_replay.apply_head_ffn_plan(module, plan, block_plan)
    model = T2VModel(module, wan.vae, wan.text_encoder, wan.tokenizer, wan.scheduler, components=wan.components)
    sampler = SamplerSpec.consistency(dict(wan.scheduler.config), 50, 8, parameterisation="flow")
    return save_pruned(model, block_plan, out, dataclasses.replace(wan.card, kind="pruned", sampler=sampler), channel_plan=plan)


def test_a_pruned_directory_saves_and_loads_with_the_toolchain_s_loader(student, wan, tmp_path):
    block_plan = plans.make_plan(dit_replay.base_config(student), ["blocks.0"], "lowest_cost")
    blocks = WanFamily().apply_plan(copy.deepcopy(student), block_plan)
    plan = make_head_ffn_plan(blocks, 0.5, _calls(), block_plan=block_plan)
    assert [e["source"] for e in plan["blocks"]] == ["blocks.1"]
    out = _save_pruned(student, wan, block_plan, plan, tmp_path / "pruned")
    expected = head_ffn_prune(blocks, plan, block_plan)
    config = json.loads((out / "transformer" / "config.json").read_text())
    assert config[plans.WIDTH_KEY] == [{"attn1_heads": 1, "attn2_heads": 1, "ffn_dim": 16}] and config["num_layers"] == 2
    loaded = load_teacher(out)  # the block plan and the head / FFN plan beside the weights
    sa, sb = expected.state_dict(), loaded.unet.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    call = _calls(1, seed=7)[0]
    assert torch.equal(_out(loaded.unet, call), _out(expected, call))
    # The transformer folder describes itself: its config's widths (and the block plan) rebuild it without the plan file.
    alone = WanFamily().load(out / "transformer", torch.float32, block_plan)
    assert torch.equal(_out(alone, call), _out(expected, call))
    # ... and the saved transformer round-trips through save_pretrained / the loader again.
    alone.save_pretrained(tmp_path / "resaved", safe_serialization=True)
    again = WanFamily().load(tmp_path / "resaved", torch.float32, block_plan)
    assert torch.equal(_out(again, call), _out(expected, call))


def test_bad_plans_and_edited_directories_are_refused_in_one_line(student, wan, tmp_path):
    plan = make_head_ffn_plan(student, 0.5, _calls())
    config = dit_replay.base_config(student)
    out = _save_pruned(student, wan, None, plan, tmp_path / "pruned")
    cases = [
        ({**plan, "kind": "channel_pruning_plan"}, "not a DiT head / FFN plan"),
        ({**plan, "architecture_hash": "0" * 16}, "another architecture"),
        ({**plan, "after_blocks": ["blocks.0"]}, "after removing blocks"),
        ({**plan, "blocks": plan["blocks"][:1]}, "one entry per kept block"),
        ({**plan, "blocks": [{**plan["blocks"][0], "attn1": {**plan["blocks"][0]["attn1"], "kept_heads": [2]}}, plan["blocks"][1]]},
         "attn1 must keep sorted unique heads"),
        ({**plan, "blocks": [{**plan["blocks"][0], "ffn": {**plan["blocks"][0]["ffn"], "kept": [3, 1]}}, plan["blocks"][1]]},
         "ffn must keep sorted unique channels"),
        ({**plan, "blocks": [{**plan["blocks"][0], "attn2": {**plan["blocks"][0]["attn2"], "norm_k_scale": -1}}, plan["blocks"][1]]},
         "must be positive"),
    ]
    for bad, message in cases:
        with pytest.raises(PlanError, match=message) as info:
            plans.validate_head_ffn_plan(bad, config)
        assert "\n" not in str(info.value)
    # Replay checks everything before it edits: the model is untouched by a refused plan.
    model = copy.deepcopy(student)
    with pytest.raises(PlanError):
        dit_replay.apply_head_ffn_plan(model, cases[4][0])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), student.state_dict().values()))
    with pytest.raises(PlanError, match="width-pruned already"):
        dit_replay.apply_head_ffn_plan(head_ffn_prune(student, plan), plan)
    with pytest.raises(PlanError, match="a UNet3D replays a channel plan"):
        from turbo_edge.core.denoiser import UNet3DFamily

        UNet3DFamily().apply_channel_plan(torch.nn.Module(), plan)
    # A config whose widths were edited after pruning disagrees with the plan beside it.
    path = out / "transformer" / "config.json"
    edited = json.loads(path.read_text())
    edited[plans.WIDTH_KEY][0]["ffn_dim"] = 8
    path.write_text(json.dumps(edited))
    with pytest.raises(ModelLayoutError, match="disagree"):
        load_teacher(out)
    edited[plans.WIDTH_KEY] = [{"attn1_heads": 3, "attn2_heads": 1, "ffn_dim": 16}] * 2
    path.write_text(json.dumps(edited))
    with pytest.raises(PlanError, match=r"turbo_edge_block_widths\[0\] must be"):
        WanFamily().load(out / "transformer", torch.float32)


def test_a_width_pruned_transformer_exports_and_matches_pytorch(student, wan, tmp_path):
    """The exportable forms (decomposed RMSNorm, real RoPE, SDPA) take the pruned widths: ONNX Runtime matches PyTorch."""
    from turbo_edge.export import dit
    from turbo_edge.export.contracts import ExportShapes
    from turbo_edge.export.onnx_export import export_onnx, run_ort, run_torch

    plan = make_head_ffn_plan(student, 0.5, _calls())
    out = _save_pruned(student, wan, None, plan, tmp_path / "pruned")
    model = load_teacher(out)
    contract, module = dit.denoiser_component(model, ExportShapes(9, 32, 32, max_batch=1, min_frames=9, max_frames=9, uses_cfg=True))
    assert [t.name for t in contract.inputs][-1] == "timestep_cond"
    path = tmp_path / "unet.onnx"
    export_onnx(module, contract, path)
    feeds = contract.sample_inputs("opt")
    ref, got = run_torch(module, contract, feeds)["out_sample"], run_ort(path, feeds)["out_sample"]
    assert np.abs(got - ref).max() < 1e-4
