"""Real-size training features on the tiny models: bf16 autocast, gradient checkpointing, the shared-base LoRA
teacher (one copy of the weights) and the resident-memory metrics in the training logs."""

import json
import types

import numpy as np
import pytest
import torch

from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.distill.student import base_weights
from turbo_edge.distill.train import Distiller, train
from turbo_edge.spec.configs import DistillConfig


def _cfg(teacher, out, **kw):
    base = dict(teacher=str(teacher), out=str(out), steps=2, batch=2, dataset_clips=8, checkpoint_every=2, log_every=1, lora_rank=4, w_embedding_dim=8)
    base.update(kw)
    return DistillConfig.make(**base)


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, 4, 8, 8, generator=g), torch.tensor([300, 900][:b]), torch.randn(b, 16, 32, generator=g)


def _perturb_adapters(student: torch.nn.Module) -> int:
    """Give every LoRA B and the trainable cond_proj non-zero weights, so the adapters change the student's output."""
    g = torch.Generator().manual_seed(1)
    touched = 0
    with torch.no_grad():
        for name, p in student.named_parameters():
            if p.requires_grad and ("lora_B" in name or "cond_proj" in name):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
                touched += 1
    return touched


def test_shared_teacher_pass_is_the_original_teacher_bit_for_bit(tiny_t2v_dir, tmp_path):
    reference = load_teacher(tiny_t2v_dir)  # an untouched second load: the original teacher
    distiller = Distiller(_cfg(tiny_t2v_dir, tmp_path / "r"), load_teacher(tiny_t2v_dir), None)
    assert distiller.shared  # the default for a LoRA student started from the teacher
    assert _perturb_adapters(distiller.student) > 10
    distiller.student.train()  # as in the loop: dropout on in the student's temporal convs
    x, t, e = _inputs()
    with torch.no_grad():
        want = reference.denoise(x, t, e)
    with distiller.teacher_pass():
        got = distiller.teacher.denoise(x, t, e)
    assert torch.equal(got, want)  # bit for bit
    assert distiller.student.training and distiller.student.base_model.model.down_blocks[0].training  # train mode restored
    w = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        student_out = distiller.student(x, t, encoder_hidden_states=e, timestep_cond=w).sample
    assert (student_out - want).abs().max().item() > 1e-3  # the adapters are live outside the teacher pass


def test_shared_teacher_holds_one_copy_of_the_base_weights(tiny_t2v_dir, tmp_path):
    base = sum(base_weights(load_teacher(tiny_t2v_dir).unet).values())
    shared = Distiller(_cfg(tiny_t2v_dir, tmp_path / "s"), load_teacher(tiny_t2v_dir), None)
    copied = Distiller(_cfg(tiny_t2v_dir, tmp_path / "c", teacher_weights="copy"), load_teacher(tiny_t2v_dir), None)
    teacher_ptrs = set(base_weights(shared.teacher.unet))
    assert teacher_ptrs <= set(base_weights(shared.student))  # every teacher storage is one of the student's
    assert not set(base_weights(copied.teacher.unet)) & set(base_weights(copied.student))
    extra = sum(p.numel() * p.element_size() for p in shared.student.parameters() if p.requires_grad)  # LoRA + cond_proj copy
    assert shared.weight_bytes() <= base + 2 * extra < 1.5 * base
    assert copied.weight_bytes() >= 2 * base


def test_shared_and_copied_teacher_train_identically(tiny_t2v_dir, tmp_path):
    shared = train(_cfg(tiny_t2v_dir, tmp_path / "shared", teacher_weights="shared"))
    copied = train(_cfg(tiny_t2v_dir, tmp_path / "copy", teacher_weights="copy"))
    a, b = _log(tmp_path / "shared"), _log(tmp_path / "copy")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    sa, sb = load_teacher(shared).unet.state_dict(), load_teacher(copied).unet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("kw, reason", [({"mode": "full"}, "full fine-tune"), ({"motion_guidance": 0.5}, "motion guidance"),
                                        ({"vsd_weight": 0.5}, "VSD")])
def test_shared_teacher_refused_where_not_exact(kw, reason):
    assert not DistillConfig.make(**kw).shares_teacher()  # auto falls back to a copy
    with pytest.raises(ValueError, match=f"teacher_weights 'shared' is not exact here: .*{reason}"):
        DistillConfig.make(teacher_weights="shared", **kw)


def test_bf16_distill_steps_are_finite_logged_and_close_to_fp32(tiny_t2v_dir, tmp_path):
    train(_cfg(tiny_t2v_dir, tmp_path / "bf16", mixed_precision="bf16"))
    train(_cfg(tiny_t2v_dir, tmp_path / "fp32"))
    bf16, fp32 = _log(tmp_path / "bf16"), _log(tmp_path / "fp32")
    assert [r["step"] for r in bf16] == [1, 2] and all(np.isfinite(r["loss"]) and np.isfinite(r["loss_cd"]) for r in bf16)
    rel = abs(bf16[0]["loss"] - fp32[0]["loss"]) / fp32[0]["loss"]
    assert 0 < rel < 0.1, rel  # autocast changed the numbers, not the result
    config = json.loads((tmp_path / "bf16" / "distill_config.json").read_text())
    assert config["loop"]["mixed_precision"] == "bf16"


def test_resident_memory_is_logged_every_step(tiny_t2v_dir, tmp_path):
    train(_cfg(tiny_t2v_dir, tmp_path / "m", steps=1))
    (row,) = _log(tmp_path / "m")
    assert 50 < row["peak_rss_mib"] < 64 * 1024 and 0 < row["rss_mib"] <= row["peak_rss_mib"] + 1


def _loss_and_grads(tiny_t2v_dir, tmp_path, checkpointing: bool):
    cfg = _cfg(tiny_t2v_dir, tmp_path / str(checkpointing), gradient_checkpointing=checkpointing)
    distiller = Distiller(cfg, load_teacher(tiny_t2v_dir), None)
    _perturb_adapters(distiller.student)
    calls = []
    distiller.student.base_model.model.down_blocks[0].resnets[0].register_forward_hook(lambda *a: calls.append(1))
    x0 = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)  # the temporal convs' dropout
    loss, _ = distiller.loss(x0, ["a red circle moving left", "a blue square staying still"], 0, 0, distiller.student)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in distiller.student.named_parameters() if p.requires_grad}
    return loss.item(), grads, len(calls)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_t2v_dir, tmp_path):
    loss, grads, calls = _loss_and_grads(tiny_t2v_dir, tmp_path, False)
    loss_ckpt, grads_ckpt, calls_ckpt = _loss_and_grads(tiny_t2v_dir, tmp_path, True)
    # student, teacher, target passes; checkpointing re-runs the student's block once more in backward
    assert calls_ckpt == calls + 1
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
    worst = max(((grads[k] - grads_ckpt[k]).abs().max() / grads[k].abs().max().clamp(min=1e-12)).item() for k in grads)
    assert worst < 1e-5


def test_gradient_checkpointing_refused_by_a_family_without_it(tiny_t2v_dir):
    from diffusers import UNet3DConditionModel

    from turbo_edge.core.denoiser import DenoiserFamily

    unet = load_teacher(tiny_t2v_dir).unet
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        UNet3DConditionModel.enable_gradient_checkpointing(unet)  # why the UNet3D family wraps its blocks itself
    with pytest.raises(ValueError, match="^the dit denoiser family has no gradient checkpointing; train it with gradient_checkpointing false$"):
        DenoiserFamily.enable_gradient_checkpointing(types.SimpleNamespace(name="dit"), unet)


def test_prune_recovery_in_bf16_with_checkpointing_logs_memory(tiny_student_dir, tmp_path):
    from turbo_edge.prune.train import prune
    from turbo_edge.spec.configs import PruneConfig

    cfg = PruneConfig.make(student=str(tiny_student_dir), out=str(tmp_path / "p"), steps=1, batch=2, dataset_clips=8, importance_clips=0,
                           checkpoint_every=1, log_every=1, disc_width=16, mixed_precision="bf16", gradient_checkpointing=True, lean_optimizer=True)
    prune(cfg)
    (row,) = _log(tmp_path / "p")
    assert np.isfinite(row["loss"]) and row["peak_rss_mib"] > 50


def test_resume_identity_ignores_what_does_not_change_the_numbers():
    default = DistillConfig.make().training_hash_fields()
    # where the teacher's weights live and activation recomputation: same numbers, so a run may resume across them
    assert DistillConfig.make(teacher_weights="copy", gradient_checkpointing=True).training_hash_fields() == default
    # bf16 changes the numbers; off, it is absent, so checkpoints written before these fields existed still resume
    assert "mixed_precision" not in default["loop"] and "teacher_weights" not in default
    assert DistillConfig.make(mixed_precision="bf16").training_hash_fields()["loop"]["mixed_precision"] == "bf16"
    with pytest.raises(ValueError, match="mixed_precision must be one of \\['no', 'bf16'\\], got 'fp16'"):
        DistillConfig.make(mixed_precision="fp16")


def test_a_frozen_unet_in_bf16_computes_what_autocast_computes_from_fp32(tiny_student_dir):
    """Prune recovery's frozen target under bf16 keeps its linear / conv weights in bf16: half the weight memory, the
    outputs within bf16 rounding of autocast's (norm parameters stay fp32)."""
    import copy

    from turbo_edge.core.training import autocast, store_frozen_for_autocast

    unet = load_teacher(tiny_student_dir).unet.eval().requires_grad_(False)
    frozen = copy.deepcopy(unet)
    weights = sum(p.numel() * 4 for m in unet.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Conv1d))
                  for p in m.parameters(recurse=False))
    assert store_frozen_for_autocast(frozen, "no") == 0
    before = list(frozen.parameters())  # held, so no address is reused
    assert store_frozen_for_autocast(frozen, "bf16") == weights // 2
    storages = {p.untyped_storage().data_ptr() for p in before}
    assert all(p.dtype == torch.float32 for m in frozen.modules() if isinstance(m, torch.nn.GroupNorm) for p in m.parameters())
    assert not any(p.untyped_storage().data_ptr() in storages for p in frozen.parameters())  # no view of the loaded weights is kept
    with pytest.raises(ValueError, match="is trainable; freeze the network first"):
        store_frozen_for_autocast(torch.nn.Linear(2, 2), "bf16")
    x, t, text = _inputs()
    w = torch.randn(2, unet.config.time_cond_proj_dim)
    with torch.no_grad():
        exact = unet(x, t, encoder_hidden_states=text, timestep_cond=w).sample
        with autocast("bf16"):
            a = unet(x, t, encoder_hidden_states=text, timestep_cond=w).sample.float()
            b = frozen(x, t, encoder_hidden_states=text, timestep_cond=w).sample.float()
    # Not bit-equal (oneDNN picks another bf16 GEMM for bf16 weights than for autocast's cast copies), but as near
    # fp32 as autocast itself.
    err_autocast, err_frozen = float((a - exact).abs().mean()), float((b - exact).abs().mean())
    assert err_frozen < 1.5 * err_autocast


def test_the_lean_optimizer_steps_per_tensor_to_the_same_weights():
    from turbo_edge.core.training import adamw

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [adamw([{"params": list(n.parameters()), "lr": 1e-2}], lean=lean) for n, lean in zip(nets, (False, True))]
    assert opts[1].defaults["foreach"] is False and opts[0].defaults["foreach"] is None and opts[1].defaults["weight_decay"] == 0.0
    x = torch.randn(32, 8)
    for _ in range(3):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert DistillConfig.make(lean_optimizer=True).training_hash_fields() == DistillConfig.make().training_hash_fields()  # resumable either way
