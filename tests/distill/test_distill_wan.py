"""Consistency distillation of a flow-matching teacher (the Wan family, on diffusers' own Wan test configuration),
and VDMini pruning of the student it makes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge.core import consistency as cd
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.spec import param
from turbo_edge.spec.configs import DistillConfig, PruneConfig
from turbo_edge.spec.sampler import SamplerSpec


def _cfg(teacher, data, out, **kw):
    base = dict(teacher=str(teacher), data=str(data), out=str(out), steps=3, batch=2, checkpoint_every=2, log_every=1, lora_rank=4,
                w_embedding_dim=8)
    base.update(kw)
    return DistillConfig.make(**base)


@pytest.fixture(scope="module")
def wan_student(wan_test_dir: Path, wan_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from turbo_edge.distill.train import train

    return train(_cfg(wan_test_dir, wan_data_dir, tmp_path_factory.mktemp("distill") / "run", steps=4))


def test_the_flow_schedule_is_the_flow_scheduler_s_and_its_solver_step_the_euler_step():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = param.NoiseSchedule.from_scheduler_config(dict(FlowMatchEulerDiscreteScheduler(shift=7.0).config), "flow")
    assert sched.is_flow and sched.prediction_type == "flow_prediction" and sched.flow_shift == 7.0
    np.testing.assert_allclose(sched.sigma[::-1], FlowMatchEulerDiscreteScheduler(shift=7.0).sigmas.numpy(), rtol=1e-5)
    np.testing.assert_allclose(sched.model_timestep([999, 0]), [1000.0, 1000.0 * sched.sigma[0]], rtol=1e-6)
    # The distiller's solver step (x0, eps from the velocity at t, then alpha_s x0 + sigma_s eps) is Euler's.
    g = torch.Generator().manual_seed(0)
    x_t, v = torch.randn(2, 4, 3, 2, 2, generator=g), torch.randn(2, 4, 3, 2, 2, generator=g)
    t, s = np.array([979, 499]), np.array([959, -1])
    _, sig_t = sched.alpha_sigma(t)
    _, sig_s = sched.alpha_sigma(s)
    x0, eps = param.to_x0_eps("flow_prediction", v, x_t, *(cd.coef(a, x_t) for a in sched.alpha_sigma(t)))
    euler = x_t + param._bcast(cd.coef(sig_s - sig_t, x_t), x_t) * v
    torch.testing.assert_close(cd.ddim_step(x0, eps, s, sched), euler, atol=1e-5, rtol=0)
    # Boundary condition at the clean end of the grid: the consistency function is the identity.
    torch.testing.assert_close(cd.consistency_output(v, x_t, np.array([0, 0]), sched, "flow_prediction"), x_t, atol=1e-3, rtol=0)


def test_a_flow_sampler_contract_names_its_shift_and_a_ddpm_one_does_not():
    flow = SamplerSpec.consistency({"num_train_timesteps": 1000, "shift": 3.0}, 50, 8, parameterisation="flow")
    assert flow.prediction_type == "flow_prediction" and flow.flow_shift == 3.0
    assert SamplerSpec.from_dict(json.loads(json.dumps(flow.to_dict()))) == flow
    assert flow.schedule().flow_shift == 3.0
    ddpm = SamplerSpec.consistency({"num_train_timesteps": 1000, "prediction_type": "v_prediction"}, 50, 8)
    assert "flow_shift" not in ddpm.to_dict() and ddpm.flow_shift is None
    with pytest.raises(Exception, match="disagree"):
        SamplerSpec.from_dict({**ddpm.to_dict(), "flow_shift": 3.0})
    with pytest.raises(ValueError, match="dynamic"):
        param.NoiseSchedule.from_scheduler_config({"use_dynamic_shifting": True}, "flow")


def test_distill_a_wan_teacher_resumes_exactly_and_writes_a_flow_student(wan_test_dir, wan_data_dir, wan_student, tmp_path):
    from turbo_edge.distill.train import train

    train(_cfg(wan_test_dir, wan_data_dir, tmp_path / "run", steps=2))
    resumed = load_teacher(train(_cfg(wan_test_dir, wan_data_dir, tmp_path / "run", steps=4)))
    ref = load_teacher(wan_student)
    for (k, a), b in zip(ref.unet.state_dict().items(), resumed.unet.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    card = json.loads((wan_student / "turbo_edge.json").read_text())
    assert card["kind"] == "student" and card["sampler"]["prediction_type"] == "flow_prediction" and card["sampler"]["flow_shift"] == 7.0
    assert json.loads((wan_student / "model_index.json").read_text())["_class_name"] == "WanPipeline"
    assert ref.family.geometry(ref.unet).guidance_dim == 8
    assert ref.scheduler_config["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    log = [json.loads(line) for line in (wan_student.parent / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss_cd"]) and r["loss_cd"] > 0 for r in log)


def test_the_flow_student_samples_at_the_model_s_geometry(wan_student):
    from turbo_edge.core.student_sampling import generate_student

    student = load_teacher(wan_student)
    clips = generate_student(student, ["a red circle moving left"], steps=2, video_size=(9, 32, 32))
    assert clips.shape == (1, 9, 32, 32, 3) and clips.dtype == np.uint8
    again = generate_student(student, ["a red circle moving left"], steps=2, video_size=(9, 32, 32))
    np.testing.assert_array_equal(clips, again)  # seeded, counter-based noise


def test_the_untrained_wan_student_is_the_teacher_at_any_guidance(wan_test_dir):
    from turbo_edge.core.denoiser import call_denoiser
    from turbo_edge.distill.student import add_lora, build_student_unet

    teacher = load_teacher(wan_test_dir)
    student = add_lora(build_student_unet(teacher.unet, 8), 4).eval()
    assert any("lora_A" in n for n, _ in student.named_parameters())  # the family's targets matched
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 16, 3, 4, 4, generator=g), torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        ref = call_denoiser(teacher.unet, x, torch.tensor([700.0]), text)
        out = call_denoiser(student, x, torch.tensor([700.0]), text, torch.randn(1, 8, generator=g))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_motion_guidance_is_refused_for_a_dit_before_any_model_loads(wan_test_dir, wan_data_dir, tmp_path):
    from turbo_edge.distill.train import train

    with pytest.raises(ValueError, match="motion guidance needs a UNet's temporal attention"):
        train(_cfg(wan_test_dir, wan_data_dir, tmp_path / "mg", motion_guidance=0.5))
    assert not (tmp_path / "mg").exists()  # refused before the run directory is claimed


def test_vdmini_prunes_the_flow_student_by_measured_motion_cost_and_recovers(wan_student, wan_data_dir, tmp_path):
    from turbo_edge.prune.train import prune

    cfg = PruneConfig.make(student=str(wan_student), data=str(wan_data_dir), out=str(tmp_path / "prune"), steps=2, batch=2,
                           remove_count=1, importance_clips=2, importance_steps=2, icd_weight=1.0, mca_weight=0.1,
                           checkpoint_every=2, log_every=1)
    pruned_dir = prune(cfg)
    table = json.loads((tmp_path / "prune" / "importance.json").read_text())
    plan = json.loads((pruned_dir / "pruning_plan.json").read_text())
    cheapest = min(table["units"], key=lambda r: (r["motion_cost"], r["content_cost"]))["name"]
    assert plan["rule"] == "vdmini" and plan["removed"] == [cheapest] and "up_layers_removed" not in plan
    pruned = load_teacher(pruned_dir)
    assert len(pruned.unet.blocks) == 1 and pruned.family.geometry(pruned.unet).guidance_dim == 8
    log = [json.loads(line) for line in (tmp_path / "prune" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r[k]) for r in log for k in ("loss_cd", "loss_icd", "loss_mca_g", "loss_disc"))
    assert json.loads((pruned_dir / "turbo_edge.json").read_text())["kind"] == "pruned"


def test_recovery_continues_a_pruned_student_with_reward_feedback(wan_student, wan_data_dir, tmp_path):
    """init_pruned: a pruned student's own plan and weights are the start (no importance run); rewards act on the
    pruned student's single-step x0 as in distillation. A model that is not a pruned student of this student is refused
    before the run directory is claimed."""
    from turbo_edge.prune.train import Recovery, _init_pruned, check_student, prune

    first = prune(PruneConfig.make(student=str(wan_student), data=str(wan_data_dir), out=str(tmp_path / "first"), steps=1, batch=2,
                                   remove_count=1, importance_clips=2, importance_steps=2, checkpoint_every=1))
    rewards = [{"name": "builtin-image", "weight": 1.0, "frames": 2}, {"name": "builtin-video", "weight": 1.0, "frames": 8}]
    cfg = PruneConfig.make(student=str(wan_student), data=str(wan_data_dir), out=str(tmp_path / "topup"), steps=2, batch=2,
                           init_pruned=str(first), rewards=rewards, checkpoint_every=2, log_every=1)
    student = load_teacher(wan_student)
    init, (plan, channel_plan) = _init_pruned(cfg, student)
    assert plan == json.loads((first / "pruning_plan.json").read_text()) and channel_plan is None
    rec = Recovery(cfg, student, check_student(student), plan, channel_plan, init=init)
    start, saved = rec.pruned.state_dict(), load_teacher(first).unet.state_dict()
    assert start.keys() == saved.keys() and all(torch.equal(start[k], saved[k].float()) for k in start)
    rec.close()
    topup = prune(cfg)
    assert not (tmp_path / "topup" / "importance.json").exists()  # the plan is the init's, not measured again
    assert json.loads((topup / "pruning_plan.json").read_text()) == plan
    log = [json.loads(line) for line in (tmp_path / "topup" / "log.jsonl").read_text().splitlines()]
    keys = ("loss_cd", "loss_icd", "reward_builtin-image", "reward_builtin-video")
    assert len(log) == 2 and all(np.isfinite(r[k]) for r in log for k in keys)
    card = json.loads((topup / "turbo_edge.json").read_text())
    assert card["kind"] == "pruned" and card["lineage"]["config"]["init_pruned"] == str(first)
    other = tmp_path / "other_student"  # the same weights at another path: not the recorded parent
    shutil.copytree(wan_student, other)
    for student_dir, init_pruned, message in ((wan_student, wan_student, "is a student, not a pruned student"),
                                              (other, first, "was pruned from")):
        with pytest.raises(ValueError, match=message):
            prune(PruneConfig.make(student=str(student_dir), data=str(wan_data_dir), out=str(tmp_path / "bad"), init_pruned=str(init_pruned)))
        assert not (tmp_path / "bad").exists()


def test_heads_and_ffn_channels_of_a_dit_are_pruned_after_its_blocks_and_the_result_loads(wan_student, wan_data_dir, tmp_path):
    """channel_ratio on a DiT: the VDMini block plan, then a head / FFN plan measured on the student's own calls; the
    pruned directory (both plans, the widths in the transformer's config) loads with load_teacher and samples."""
    from turbo_edge.core.student_sampling import generate_student
    from turbo_edge.prune.train import prune

    with pytest.raises(ValueError, match="set importance_clips >= 1"):
        prune(PruneConfig.make(student=str(wan_student), data=str(wan_data_dir), out=str(tmp_path / "none"), channel_ratio=0.5,
                               rule="none", importance_clips=0))
    assert not (tmp_path / "none").exists()  # refused before the run directory is claimed
    cfg = PruneConfig.make(student=str(wan_student), data=str(wan_data_dir), out=str(tmp_path / "c"), steps=2, batch=2, remove_count=1,
                           channel_ratio=0.5, channel_importance="activation", importance_clips=2, importance_steps=2,
                           checkpoint_every=2, log_every=1)
    pruned_dir = prune(cfg)
    block_plan = json.loads((pruned_dir / "pruning_plan.json").read_text())
    width_plan = json.loads((pruned_dir / "channel_plan.json").read_text())
    assert width_plan["kind"] == "head_ffn_plan" and width_plan["after_blocks"] == block_plan["removed"]
    assert width_plan["calibration"]["calls"] == 2 and len(width_plan["blocks"]) == 1  # 2 steps; 1 of 2 blocks kept
    config = json.loads((pruned_dir / "transformer" / "config.json").read_text())
    assert config["turbo_edge_block_widths"] == [{"attn1_heads": 1, "attn2_heads": 1, "ffn_dim": 16}]
    pruned = load_teacher(pruned_dir)
    block = pruned.unet.blocks[0]
    assert len(pruned.unet.blocks) == 1 and (block.attn1.heads, block.attn2.heads, block.ffn.net[0].proj.out_features) == (1, 1, 16)
    card = json.loads((pruned_dir / "turbo_edge.json").read_text())
    assert card["lineage"]["details"]["channel_ratio"] == 0.5 and card["lineage"]["plans"] == ["pruning_plan.json", "channel_plan.json"]
    log = [json.loads(line) for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss_cd"]) for r in log)
    clips = generate_student(pruned, ["a red circle moving left"], steps=2, video_size=(9, 32, 32))
    assert clips.shape == (1, 9, 32, 32, 3) and clips.dtype == np.uint8


def test_rewards_vsd_bf16_and_checkpointing_run_on_a_dit(wan_test_dir, wan_data_dir, tmp_path):
    """Image and video rewards on frames decoded through the causal autoencoder (lead-in skipped), VSD's fake score on
    the family's LoRA targets, bf16 autocast and block checkpointing: every term finite in every logged step."""
    from turbo_edge.distill.train import train

    cfg = _cfg(wan_test_dir, wan_data_dir, tmp_path / "terms", steps=2, vsd_weight=0.5, vsd_lora_rank=2, mixed_precision="bf16",
               gradient_checkpointing=True,
               rewards=[{"name": "builtin-image", "weight": 1.0, "frames": 2}, {"name": "builtin-video", "weight": 1.0, "frames": 8}])
    student = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "terms" / "log.jsonl").read_text().splitlines()]
    keys = ("loss_cd", "reward_builtin-image", "reward_builtin-video", "vsd_grad_rms", "loss_fake_score")
    assert len(log) == 2 and all(np.isfinite(r[k]) for r in log for k in keys)
    assert load_teacher(student).family.geometry(load_teacher(student).unet).guidance_dim == 8


def test_the_latent_reward_trains_in_a_dit_teacher_s_latent_space_and_steers_its_student(wan_test_dir, wan_data_dir, tmp_path):
    """DOLLAR's latent reward for the Wan family: world clips rendered with the lead-in frame the causal autoencoder
    needs, encoded and decoded through the family's plug point, the teacher's one-step x0 (flow schedule) among its
    samples; then used by the distiller on the student's latents."""
    from turbo_edge.cli import main as cli_main
    from turbo_edge.core.rewards.registry import load_reward
    from turbo_edge.distill.train import train

    out = tmp_path / "latent"
    assert cli_main(["rewards", "train", "--which", "latent", "--teacher", str(wan_test_dir), "--steps", "3", "--batch", "4",
                     "--samples", "12", "--x0-fraction", "0.5", "--out", str(out)]) == 0
    reward = load_reward("latent", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert reward.cfg.latent_channels == 16 and np.isfinite(metrics["final_loss"])
    score = reward(torch.randn(2, 16, 3, 4, 4), ["a red circle moving left", "a blue square moving up"])
    assert score.shape == (2,) and torch.isfinite(score).all()
    train(_cfg(wan_test_dir, wan_data_dir, tmp_path / "run", steps=1, rewards=[{"name": "latent", "weight": 1.0, "path": str(out)}]))
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert np.isfinite(log["reward_latent"])
