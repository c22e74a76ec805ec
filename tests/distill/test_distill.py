import json

import numpy as np
import pytest
import torch

from turbo_edge.core import consistency as cd
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.student_sampling import generate_student
from turbo_edge.distill.train import train
from turbo_edge.spec import param
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import DistillConfig


def _cfg(teacher, out, **kw):
    base = dict(teacher=str(teacher), out=str(out), steps=3, batch=2, dataset_clips=8, checkpoint_every=2, log_every=1, lora_rank=4, w_embedding_dim=8)
    base.update(kw)
    return DistillConfig.make(**base)


def test_consistency_output_obeys_boundary_condition():
    abar = param.alphas_cumprod({"beta_schedule": "squaredcos_cap_v2"})
    x = torch.randn(2, 4, 2, 3, 3)
    out = torch.randn_like(x)
    f0 = cd.consistency_output(out, x, np.array([0, 0]), abar, "v_prediction")
    assert torch.allclose(f0, x, atol=1e-3)  # c_skip(0)=1, c_out(0)=0
    f_hi = cd.consistency_output(out, x, np.array([999, 999]), abar, "v_prediction")
    x0, _ = param.to_x0_eps("v_prediction", out, x, *(torch.from_numpy(v).float() for v in param.alpha_sigma(abar[[999, 999]])))
    assert torch.allclose(f_hi, x0, atol=1e-4)


def test_ddim_step_to_clean_end_returns_x0():
    abar = param.alphas_cumprod({})
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(cd.ddim_step(x0, eps, np.array([-1, -1]), abar), x0)


def test_pseudo_huber_is_zero_at_equality_and_grows():
    a = torch.zeros(1, 10)
    assert cd.pseudo_huber(a, a, 0.001).item() == 0.0
    assert cd.pseudo_huber(a, a + 1, 0.001).item() == pytest.approx(1.0, abs=1e-3)


def test_distill_runs_resumes_exactly_and_writes_student(tiny_t2v_dir, tmp_path):
    ref_dir = train(_cfg(tiny_t2v_dir, tmp_path / "ref", steps=4))
    # Interrupted run: 2 steps, then resumed to 4 from its checkpoint.
    train(_cfg(tiny_t2v_dir, tmp_path / "run", steps=2))
    run_dir = train(_cfg(tiny_t2v_dir, tmp_path / "run", steps=4))
    a, b = load_teacher(ref_dir), load_teacher(run_dir)
    for (k, va), vb in zip(a.unet.state_dict().items(), b.unet.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    meta = json.loads((run_dir / "turbo_edge.json").read_text())
    assert meta["kind"] == "student" and meta["sampler"]["kind"] == "consistency" and meta["card_version"] == 2
    assert meta["sampler"]["timesteps"]["4"] == [999, 759, 499, 259]
    assert meta["lineage"]["stage"] == "distill" and meta["lineage"]["config"]["kind"] == "distill"
    assert a.unet.config.time_cond_proj_dim == 8
    log = [json.loads(line) for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss_cd"]) for r in log)
    index = json.loads((tmp_path / "ref" / "data" / "index.json").read_text())  # no --data: the world, prepared
    assert index["samples"] == 8 and index["source"]["path"] == str(tmp_path / "ref" / "world")
    clips = generate_student(a, ["a red circle moving left"], steps=2)
    assert clips.shape == (1, 4, 16, 16, 3)


def test_untrained_student_matches_teacher_prediction(tiny_t2v_dir, tmp_path):
    """cond_proj starts at zero and LoRA's B at zero: before training, student == teacher at any w."""
    from turbo_edge.distill.student import add_lora, build_student_unet

    teacher = load_teacher(tiny_t2v_dir)
    student = add_lora(build_student_unet(teacher.unet, 8), 4).eval()
    x, e = torch.randn(1, 4, 4, 4, 4), torch.randn(1, 16, 32)
    with torch.no_grad():
        ref = teacher.unet(x, torch.tensor([300]), encoder_hidden_states=e).sample
        out = student(x, torch.tensor([300]), encoder_hidden_states=e, timestep_cond=torch.randn(1, 8)).sample
    assert (ref - out).abs().max().item() < 1e-5


def test_motion_guidance_and_vsd_terms_run(tiny_t2v_dir, tmp_path):
    out = train(_cfg(tiny_t2v_dir, tmp_path / "mg", steps=2, motion_guidance=0.5, motion_fraction=1.0, vsd_weight=0.5, vsd_lora_rank=2))
    log = [json.loads(line) for line in (tmp_path / "mg" / "log.jsonl").read_text().splitlines()]
    assert all("motion_energy" in r and r["motion_energy"] >= 0 for r in log)
    assert all("loss_fake_score" in r and np.isfinite(r["loss_fake_score"]) for r in log)
    assert (out / "turbo_edge.json").is_file()


def test_motion_energy_gradient_lowers_energy(tiny_t2v_dir):
    from turbo_edge.distill.motion import MotionGuidance

    teacher = load_teacher(tiny_t2v_dir)
    mg = MotionGuidance(teacher.unet, teacher.schedule, "v_prediction", reference_t=100)
    g = torch.Generator().manual_seed(0)
    x, ref, cond = torch.randn(1, 4, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, 4, generator=g), torch.randn(1, 16, 32, generator=g)
    t = np.array([100])
    x.requires_grad_(True)
    e0 = mg.energy(x, t, ref, cond, torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(e0.sum(), x)
    e1 = mg.energy((x - 0.5 * grad / grad.norm()).detach(), t, ref, cond, torch.Generator().manual_seed(1))
    assert e1.item() < e0.item()


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"rewards": [{"name": "hps-v9", "weight": 1.0}]}, "unknown reward 'hps-v9'"),
        ({"rewards": [{"name": "builtin-image", "weight": -1.0}]}, "weight must be in"),
        ({"w_min": 5.0, "w_max": 2.0}, "w_min <= w_max"),
        ({"mode": "dora"}, "mode must be"),
    ],
)
def test_bad_config_is_rejected_before_training(kw, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig.make(**kw)


def test_resume_with_another_config_is_refused(tiny_t2v_dir, tmp_path):
    train(_cfg(tiny_t2v_dir, tmp_path / "r", steps=2))
    with pytest.raises(ValueError, match="config hash"):
        train(_cfg(tiny_t2v_dir, tmp_path / "r", steps=4, lr=0.5))


def test_student_is_not_a_teacher(tiny_t2v_dir, tmp_path):
    student_dir = train(_cfg(tiny_t2v_dir, tmp_path / "s", steps=1))
    with pytest.raises(ValueError, match="not a teacher"):
        train(_cfg(student_dir, tmp_path / "s2", steps=1))


def test_top_up_continues_from_a_distilled_student(tiny_t2v_dir, tiny_student_dir, tmp_path):
    from turbo_edge.core.pipeline_io import save_model

    # A student whose guidance embedding is clearly not the fresh zero init a teacher start would give.
    init = load_teacher(tiny_student_dir)
    with torch.no_grad():
        init.unet.time_embedding.cond_proj.weight.fill_(0.05)
    init_dir = save_model(init, tmp_path / "init_student")
    out = train(_cfg(tiny_t2v_dir, tmp_path / "topup", steps=1, lr=1e-12, init_student=str(init_dir)))
    topped = load_teacher(out)
    ref = init.unet.state_dict()
    worst = max(float((v - ref[k]).abs().max()) for k, v in topped.unet.state_dict().items())
    assert worst < 1e-5, "a top-up at a negligible learning rate must stay at the student it started from"
    assert torch.allclose(topped.unet.time_embedding.cond_proj.weight, torch.full_like(ref["time_embedding.cond_proj.weight"], 0.05))
    assert read_card(out).lineage.config["init_student"] == str(init_dir)


@pytest.mark.parametrize("kw, message", [
    ({"w_embedding_dim": 16}, "w_embedding_dim to 8"),
    ({"init_from_teacher": True}, "not an \\(unpruned\\) distilled student"),
])
def test_top_up_refuses_what_does_not_fit(tiny_t2v_dir, tiny_student_dir, tmp_path, kw, message):
    init = str(tiny_t2v_dir) if kw.pop("init_from_teacher", False) else str(tiny_student_dir)
    with pytest.raises(ValueError, match=message):
        train(_cfg(tiny_t2v_dir, tmp_path / "bad", steps=1, init_student=init, **kw))
