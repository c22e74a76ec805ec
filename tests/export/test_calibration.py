"""int8 calibration's cost is planned and bounded: the estimate line, the UNet call count it announces, and the
number of inputs NNCF gets."""

from __future__ import annotations

import logging
import re
import types

import pytest

from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.export.quantize import CALIBRATION_SOURCES, calibration_plan

TEACHER_NAMES = ("sample", "timestep", "encoder_hidden_states")
STUDENT_NAMES = (*TEACHER_NAMES, "timestep_cond")
SHAPES = types.SimpleNamespace(frames=None, height=None, width=None)


def _cfg(**kw):
    base = dict(int8_calibration_steps=None, default_steps=None, guidance=None, seed=0, int8_calibration_prompts=3, int8_subset_size=300)
    return types.SimpleNamespace(**{**base, **kw})


def _counted(model):
    calls = []
    model.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def _estimate(caplog) -> tuple[int, int, int, int]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("int8 calibration:")]
    assert len(lines) == 1, lines
    m = re.fullmatch(r"int8 calibration: (\d+) prompts x (\d+) timesteps = (\d+) UNet calls, ~\d+ s \(first call [\d.]+ s\); "
                     r"then NNCF statistics on (\d+) inputs", lines[0])
    assert m, lines[0]
    return tuple(int(g) for g in m.groups())


@pytest.mark.parametrize("prompts, timesteps, samples, want", [(8, 4, 300, (8, 4, 32)), (8, 50, 300, (6, 50, 300)), (8, 4, 5, (2, 4, 5)),
                                                               (3, 1, 2, (2, 1, 2))])
def test_plan_runs_only_the_prompts_the_bound_needs(prompts, timesteps, samples, want):
    plan = calibration_plan(prompts, timesteps, samples)
    assert (plan.prompts, plan.timesteps, plan.samples) == want and plan.calls == want[0] * want[1]


def test_plan_refuses_an_empty_calibration():
    with pytest.raises(ValueError, match="int8 calibration needs prompts, timesteps and samples >= 1, got 3, 4, 0"):
        calibration_plan(3, 4, 0)


def test_student_estimate_line_and_call_count_follow_the_formula(tiny_student_dir, caplog):
    model = load_teacher(tiny_student_dir)
    calls = _counted(model)
    with caplog.at_level(logging.INFO, logger="turbo_edge"):
        feeds = CALIBRATION_SOURCES["consistency"](model, _cfg(), SHAPES, STUDENT_NAMES)
    n, t, k, m = _estimate(caplog)
    steps = model.card.default_steps  # the student's own timesteps
    assert (n, t) == (3, steps) and k == n * t == len(calls) and m == len(feeds) == k
    assert set(calls) == {1}  # one prompt per call, as the runtime calls it


def test_bounded_student_calibration_uses_at_most_the_configured_inputs(tiny_student_dir, caplog):
    model = load_teacher(tiny_student_dir)
    calls = _counted(model)
    with caplog.at_level(logging.INFO, logger="turbo_edge"):
        feeds = CALIBRATION_SOURCES["consistency"](model, _cfg(int8_calibration_prompts=8, int8_calibration_steps=2, int8_subset_size=3), SHAPES, STUDENT_NAMES)
    n, t, k, m = _estimate(caplog)
    assert (n, t, k, m) == (2, 2, 4, 3)  # ceil(3 / 2) prompts of the 8, their 2-step trajectories, 3 inputs kept
    assert len(feeds) == 3 and len(calls) == 4
    assert [float(f["timestep"][0]) for f in feeds[:2]] == [999.0, 999.0]  # interleaved by step: both prompts' first step first


def test_teacher_estimate_and_bound(tiny_t2v_dir, caplog):
    model = load_teacher(tiny_t2v_dir)
    calls = _counted(model)
    with caplog.at_level(logging.INFO, logger="turbo_edge"):
        feeds = CALIBRATION_SOURCES["ddim_cfg"](model, _cfg(int8_calibration_steps=5, int8_subset_size=7), SHAPES, TEACHER_NAMES)
    n, t, k, m = _estimate(caplog)
    assert (n, t, k, m) == (2, 5, 10, 7) and len(calls) == 10 and len(feeds) == 7
    assert set(calls) == {2}  # [uncond, cond] of one prompt per call
    assert all(f["sample"].shape[0] == 2 and f["encoder_hidden_states"].shape[0] == 2 for f in feeds)
