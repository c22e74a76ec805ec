import pytest
import torch

from turbo_edge.core import checkpoint as ckpt


def _model_and_opt(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _train(model, opt, steps, start=0):
    for step in range(start, start + steps):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_resume_reproduces_uninterrupted_training(tmp_path):
    ref, ref_opt = _model_and_opt(0)
    _train(ref, ref_opt, 10)

    model, opt = _model_and_opt(0)
    _train(model, opt, 6)
    ckpt.save_checkpoint(tmp_path, {"model": model}, opt, {"step": 6, "config_hash": "abc"})
    resumed, resumed_opt = _model_and_opt(1)  # different init: everything must come from the checkpoint
    meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path), {"model": resumed}, resumed_opt, expected_config_hash="abc")
    _train(resumed, resumed_opt, 4, start=meta["step"])
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_keeps_newest_and_skips_unfinished(tmp_path):
    model, opt = _model_and_opt(0)
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, {"model": model}, opt, {"step": step}, keep=2)
    assert [p.name for p in sorted(tmp_path.glob("step_*"))] == ["step_0000002", "step_0000003"]
    (tmp_path / "step_0000009").mkdir()  # a crash before state.json was written
    assert ckpt.latest_checkpoint(tmp_path).name == "step_0000003"


def test_refuses_checkpoint_of_another_config(tmp_path):
    model, opt = _model_and_opt(0)
    ckpt.save_checkpoint(tmp_path, {"model": model}, opt, {"step": 1, "config_hash": "aaa"})
    with pytest.raises(ValueError, match="config hash aaa.*new output directory"):
        ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path), {"model": model}, opt, expected_config_hash="bbb")
