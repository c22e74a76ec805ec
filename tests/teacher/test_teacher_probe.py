"""The direction probe: it must see what a model listens to, and see nothing in a model that ignores its text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.spec.configs import ProbeConfig
from turbo_edge.teacher.probe import probe
from turbo_edge.teacher.train import sample_timesteps


@pytest.fixture(scope="module")
def builtin():
    torch.set_num_threads(2)
    return load_teacher("builtin", torch_dtype=torch.float32)


def test_probe_sees_the_colour_and_direction_the_builtin_teacher_learned(builtin):
    rows = probe(builtin, ProbeConfig(timesteps=(925,), num=8, batch=8))["rows"]
    (row,) = rows
    assert row["t"] == 925 and 0 < row["snr"] < 0.05
    # The shipped teacher binds colour: a wrong colour word costs far more x0 loss than the true prompt.
    assert row["gap_colour"] > 0.2
    assert row["gap_uncond"] > 0.2
    # ... and direction: at t=925 a wrong direction word costs +150 % over 32 clips (the snapshot before the
    # high-noise recipe: +2 %, its samples moving in random directions).
    assert row["gap_direction"] > 0.5
    assert 0.0 <= row["direction_acc"] <= 1.0


def test_probe_reads_zero_gaps_from_a_model_that_ignores_its_text(builtin):
    import copy

    deaf = copy.copy(builtin)
    deaf.unet = copy.deepcopy(builtin.unet)
    with torch.no_grad():
        for name, module in deaf.unet.named_modules():
            if name.endswith("attn2"):  # every cross-attention: the only path from text to the UNet
                module.to_out[0].weight.zero_()
                module.to_out[0].bias.zero_()
    rows = probe(deaf, ProbeConfig(timesteps=(500, 975), num=4, batch=4))["rows"]
    for row in rows:
        for key in ("gap_direction", "gap_colour", "gap_uncond"):
            assert abs(row[key]) < 1e-5, (row["t"], key, row[key])


def test_probe_rejects_models_and_timesteps_it_cannot_measure(builtin, tiny_t2v_dir):
    with pytest.raises(ValueError, match="outside the model's training range"):
        probe(builtin, ProbeConfig(timesteps=(1000,), num=2, batch=2))
    with pytest.raises(ValueError, match="cannot draw"):
        probe(load_teacher(tiny_t2v_dir), ProbeConfig(timesteps=(500,), num=2, batch=2))
    with pytest.raises(ValueError, match="positive"):
        ProbeConfig(num=0)


def test_high_noise_timestep_sampling():
    plain = np.random.default_rng(3).integers(0, 1000, size=64)
    # Fraction 0 replays the plain uniform draws (runs recorded before the option keep their batches).
    assert np.array_equal(sample_timesteps(np.random.default_rng(3), 64, 1000, 0.0, 850), plain)
    t = sample_timesteps(np.random.default_rng(4), 20000, 1000, 0.5, 850)
    assert t.min() >= 0 and t.max() < 1000
    # Half the draws come from [850, 1000), the other half uniform: 0.5 + 0.5 * 0.15 land at t >= 850.
    assert abs((t >= 850).mean() - 0.575) < 0.015
