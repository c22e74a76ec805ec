"""A real (tiny) distilled student through export and the runtime: int8 calibrated on its own consistency
sampler, and the torch-free runtime reproducing the PyTorch student's frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from turbo_edge.core.pipeline_io import load_teacher

PROMPTS = ["a red circle moving left", "a blue square staying still"]


@pytest.fixture(scope="module")
def student_bundle(tiny_student_dir, tmp_path_factory):
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    out = tmp_path_factory.mktemp("student_bundles") / "student"
    cfg = ExportConfig(model=str(tiny_student_dir), out=str(out), precisions=("fp32", "int8"), int8_calibration_prompts=3,
                       openvino_check=False, threads=1, int8_scope="all")  # not "auto": the same graph on every CI host
    export_bundle(tiny_student_dir, out, cfg)
    return out


def test_student_calibration_follows_its_own_sampler(tiny_student_dir):
    import types

    from turbo_edge.core.student_sampling import sampler_contract, student_timesteps
    from turbo_edge.export.quantize import CALIBRATION_SOURCES

    model = load_teacher(tiny_student_dir)
    cfg = types.SimpleNamespace(int8_calibration_steps=None, default_steps=None, guidance=None, seed=0, int8_calibration_prompts=3, int8_subset_size=300)
    shapes = types.SimpleNamespace(frames=None, height=None, width=None)
    names = ("sample", "timestep", "encoder_hidden_states", "timestep_cond")
    feeds = CALIBRATION_SOURCES["consistency"](model, cfg, shapes, names)
    steps = model.card.default_steps
    assert len(feeds) == 3 * steps  # one input per prompt and step
    assert all(tuple(f) == names and f["sample"].shape[0] == 1 for f in feeds)
    want = student_timesteps(sampler_contract(model), steps).astype(np.float32)
    got = sorted({float(f["timestep"][0]) for f in feeds}, reverse=True)
    assert got == sorted(want.tolist(), reverse=True)
    # the guidance embedding is the model's default w, the same for every call
    assert np.allclose(feeds[0]["timestep_cond"], feeds[-1]["timestep_cond"]) and np.abs(feeds[0]["timestep_cond"]).sum() > 0


def test_student_bundle_has_consistency_contract_and_int8(student_bundle):
    from turbo_edge.export import verify_bundle

    manifest = verify_bundle(student_bundle)
    assert manifest["sampler"]["kind"] == "consistency"
    unet = manifest["components"]["unet"]
    assert set(unet["files"]) == {"fp32", "int8"}
    assert "timestep_cond" in [i["name"] for i in unet["inputs"]]
    parity = json.loads((student_bundle / "parity.json").read_text())
    int8 = parity["onnxruntime"]["unet"]["int8"]
    assert int8["passed"] and int8["mean_rel"] < 0.2


@pytest.mark.parametrize("steps", [1, 4])
def test_runtime_reproduces_the_pytorch_student(tiny_student_dir, student_bundle, steps):
    from turbo_edge.core.student_sampling import generate_student
    from turbo_edge.runtime.pipeline import Pipeline

    torch_frames = generate_student(load_teacher(tiny_student_dir), PROMPTS, steps=steps, seed=3)
    pipe = Pipeline.from_bundle(student_bundle, backend="ort-cpu", threads=1)
    rt_frames = pipe.generate_batch(PROMPTS, steps=steps, seed=3)
    assert rt_frames.shape == torch_frames.shape and rt_frames.dtype == np.uint8
    diff = np.abs(rt_frames.astype(int) - torch_frames.astype(int))
    assert diff.max() <= 1, f"runtime and PyTorch student differ by up to {diff.max()} levels"


def test_int8_student_runs_in_openvino_close_to_fp32(student_bundle):
    from turbo_edge.runtime.pipeline import Pipeline

    fp32 = Pipeline.from_bundle(student_bundle, backend="openvino", precision="fp32", threads=1).generate_batch(PROMPTS, seed=1)
    int8 = Pipeline.from_bundle(student_bundle, backend="openvino", precision="int8", threads=1).generate_batch(PROMPTS, seed=1)
    mean_abs = np.abs(fp32.astype(float) - int8.astype(float)).mean()
    assert mean_abs < 12.0, f"int8 frames drift {mean_abs:.1f} levels on average from fp32"


def test_eval_scores_a_bundle_like_the_model_it_came_from(tiny_student_dir, student_bundle):
    from turbo_edge.evaluate import run_eval
    from turbo_edge.spec.configs import EvalConfig

    common = {"steps": 1, "prompts": "val", "num": 4, "seed": 0, "batch_size": 2}
    torch_result = run_eval(EvalConfig(model=str(tiny_student_dir), **common))
    fp32 = run_eval(EvalConfig(model=str(student_bundle), backend="ort-cpu", precision="fp32", threads=1, **common))
    for key in ("content_acc", "motion_acc", "consistency"):
        assert fp32[key] == pytest.approx(torch_result[key], abs=1e-3), key
    assert fp32["fd"] == pytest.approx(torch_result["fd"], rel=1e-2)
    int8 = run_eval(EvalConfig(model=str(student_bundle), backend="openvino", precision="int8", threads=1, **common))
    assert int8["config"]["precision"] == "int8" and int8["n_videos"] == 4


def test_eval_refuses_runtime_options_for_a_model_directory(tiny_student_dir):
    from turbo_edge.spec.configs import EvalConfig

    with pytest.raises(ValueError, match="not a bundle directory"):
        EvalConfig(model=str(tiny_student_dir), precision="int8")
    with pytest.raises(ValueError, match="--backend must be one of"):
        EvalConfig(model=str(tiny_student_dir), backend="cuda")
