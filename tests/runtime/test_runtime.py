"""The torch-free runtime: samplers, bundle verification, backends, pipeline behaviour, errors, threads, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from turbo_edge.runtime import samplers
from turbo_edge.runtime.backends import Binding
from turbo_edge.runtime.backends.tensorrt import TensorRTBackend
from turbo_edge.runtime.pipeline import Pipeline, PromptTruncatedWarning
from turbo_edge.spec import param
from turbo_edge.spec.bundle import load_bundle
from turbo_edge.spec.errors import BackendUnavailableError, BundleError, RuntimeInputError
from turbo_edge.spec.noise import normal, stream_id

PROMPT = "a red circle moving left"


# ------------------------------------------------------------------ lean import


def test_import_runtime_loads_no_torch_diffusers_or_tensorrt():
    code = (
        "import sys, turbo_edge.runtime, turbo_edge.runtime.pipeline, turbo_edge.runtime.generate, turbo_edge.cli, "
        "turbo_edge.runtime.backends.tensorrt, turbo_edge.runtime.backends.ort, turbo_edge.runtime.backends.openvino_cpu; "
        "print([m for m in ('torch', 'diffusers', 'transformers', 'tensorrt', 'onnxruntime', 'openvino', 'av', 'webdataset') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------ samplers


def _abar() -> np.ndarray:
    return param.alphas_cumprod({"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"})


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_cfg_matches_diffusers_ddim_scheduler(prediction_type):
    torch = pytest.importorskip("torch")
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
                          timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(7)
    x0 = normal(1, 0, (2, 3, 4))
    w = np.float32(2.5)

    def model_fn(x, t):  # a deterministic "network": different for the two CFG halves
        return np.concatenate([np.tanh(x * 0.7 + t * 1e-3), np.tanh(x * 0.9 - 0.1)]).astype(np.float32)

    ours = samplers.ddim_cfg(model_fn, x0.copy(), [int(t) for t in sched.timesteps], alphas_cumprod=_abar(),
                             prediction_type=prediction_type, guidance=float(w),
                             prev_timesteps=samplers.ddim_prev_timesteps([int(t) for t in sched.timesteps], 1000))
    x = torch.from_numpy(x0.copy())
    for t in sched.timesteps:
        out = torch.from_numpy(model_fn(x.numpy(), int(t)))
        u, c = out.chunk(2)
        x = sched.step(u + w * (c - u), t, x).prev_sample
    # epsilon at t=999 of a cosine schedule divides by alpha ~ 0: compare relative to the magnitude.
    assert np.abs(ours - x.numpy()).max() <= 2e-5 * max(1.0, float(np.abs(x.numpy()).max()))


def test_consistency_sampler_matches_a_float64_reference_and_lcm_single_step():
    abar = _abar()
    ts = [999, 759, 499, 259]
    x0 = normal(2, 0, (1, 2, 3, 3))

    def model_fn(x, t):
        return np.tanh(x * 0.5 + t * 1e-3).astype(np.float32)

    def noise_fn(step):
        return normal(2, stream_id(0, step), x0.shape)

    ours = samplers.consistency(model_fn, x0.copy(), ts, alphas_cumprod=abar, prediction_type="v_prediction", noise_fn=noise_fn)
    # Reference: the same algorithm written with param's functions directly, in float64.
    x = x0.astype(np.float64)
    for i, t in enumerate(ts):
        a, s = param.alpha_sigma(abar[t])
        x0_pred, _ = param.to_x0_eps("v_prediction", model_fn(x.astype(np.float32), t).astype(np.float64), x, np.array([a]), np.array([s]))
        c_skip, c_out = param.boundary_scalings(np.array(t))
        x = c_skip * x + c_out * x0_pred
        if i + 1 < len(ts):
            an, sn = param.alpha_sigma(abar[ts[i + 1]])
            x = an * x + sn * noise_fn(i + 1)
    assert np.abs(ours - x).max() < 1e-5
    # One step has no noise: it equals diffusers' LCMScheduler.step's denoised output.
    torch = pytest.importorskip("torch")
    from diffusers import LCMScheduler

    lcm = LCMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", timestep_scaling=10.0)
    lcm.set_timesteps(timesteps=[999])
    ref = lcm.step(torch.from_numpy(model_fn(x0, 999)), 999, torch.from_numpy(x0.copy())).denoised.numpy()
    one = samplers.consistency(model_fn, x0.copy(), [999], alphas_cumprod=abar, prediction_type="v_prediction", noise_fn=noise_fn)
    assert np.abs(one - ref).max() < 1e-5


def test_guidance_embedding_matches_diffusers():
    torch = pytest.importorskip("torch")
    from diffusers import LatentConsistencyModelPipeline

    ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor([7.5]), embedding_dim=32).numpy()
    # diffusers works in float32: sin of arguments up to w * 1000 = 7500 carries ~7500 * 6e-8 of rounding.
    assert np.abs(samplers.guidance_embedding(7.5, 32, 1) - ref).max() < 1e-3


# ------------------------------------------------------------------ bundle verification


def test_tampered_missing_and_extra_files_are_named(synthetic_teacher_bundle, tmp_path):
    b = shutil.copytree(synthetic_teacher_bundle, tmp_path / "b")
    assert load_bundle(b).sampler.kind == "ddim_cfg"
    with open(b / "unet.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"unet\.onnx .*changed after export.*re-export"):
        Pipeline.from_bundle(b)
    (b / "unet.onnx").unlink()
    with pytest.raises(BundleError, match=r"unet\.onnx is missing"):
        load_bundle(b)
    shutil.copy(synthetic_teacher_bundle / "unet.onnx", b / "unet.onnx")
    (b / "stray.txt").write_text("x")
    with pytest.raises(BundleError, match="stray.txt"):
        load_bundle(b)
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def test_schema_version_is_checked(synthetic_teacher_bundle, tmp_path):
    b = shutil.copytree(synthetic_teacher_bundle, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema_version 99"):
        load_bundle(b)


# ------------------------------------------------------------------ pipeline


@pytest.fixture(scope="module")
def teacher_pipe(synthetic_teacher_bundle):
    return Pipeline.from_bundle(synthetic_teacher_bundle, backend="ort-cpu", threads=1)


@pytest.fixture(scope="module")
def student_pipe(synthetic_student_bundle):
    return Pipeline.from_bundle(synthetic_student_bundle, backend="ort-cpu", threads=1)


def test_generate_shape_determinism_and_seed(teacher_pipe, student_pipe):
    for pipe in (teacher_pipe, student_pipe):
        a = pipe.generate(PROMPT, seed=0)
        assert a.dtype == np.uint8 and a.shape == (3, 8, 8, 3)
        assert np.array_equal(a, pipe.generate(PROMPT, seed=0))
        assert not np.array_equal(a, pipe.generate(PROMPT, seed=1))
        assert not np.array_equal(a, pipe.generate("a blue square moving up", seed=0))


def test_batch_row_i_uses_noise_streams_of_index_i(student_pipe):
    batch = student_pipe.generate_batch([PROMPT, "a blue square moving up"], seed=5)
    assert np.array_equal(batch[0], student_pipe.generate(PROMPT, seed=5))
    assert batch.shape == (2, 3, 8, 8, 3)


def test_ort_and_openvino_backends_agree(synthetic_teacher_bundle, synthetic_student_bundle, teacher_pipe, student_pipe):
    for bundle, pipe in ((synthetic_teacher_bundle, teacher_pipe), (synthetic_student_bundle, student_pipe)):
        ov = Pipeline.from_bundle(bundle, backend="openvino", threads=1)
        diff = np.abs(ov.generate(PROMPT, seed=3).astype(int) - pipe.generate(PROMPT, seed=3).astype(int))
        assert diff.max() <= 1


def test_text_is_encoded_once_per_prompt(student_pipe):
    first = student_pipe.run(["a green triangle moving down"])
    again = student_pipe.run(["a green triangle moving down"])
    assert "text_encoder" in first.session_seconds and "text_encoder" not in again.session_seconds
    assert np.array_equal(first.frames, again.frames)


def test_overhead_is_only_the_session_time_and_no_buffers_are_reallocated(student_pipe):
    res = student_pipe.run([PROMPT], steps=4)
    bindings = dict(student_pipe._local.bindings)
    student_pipe.run([PROMPT], steps=4)
    assert set(res.session_seconds) >= {"unet", "vae_decoder"}
    assert all(student_pipe._local.bindings[k] is v for k, v in bindings.items())


def test_bad_inputs_give_clear_errors(teacher_pipe, student_pipe):
    with pytest.raises(RuntimeInputError, match="empty prompt"):
        teacher_pipe.generate("   ")
    with pytest.raises(RuntimeInputError, match=r"never trained on: 'dog'; use only: "):
        teacher_pipe.generate("a red dog")
    with pytest.raises(RuntimeInputError, match=r"steps=3 is not supported.*\[1, 2, 4\]"):
        student_pipe.generate(PROMPT, steps=3)
    with pytest.raises(RuntimeInputError, match="outside the bundle's profile"):
        student_pipe.generate(PROMPT, frames=9)
    with pytest.raises(RuntimeInputError, match="outside the bundle's profile"):
        student_pipe.generate(PROMPT, height=16, width=16)
    with pytest.raises(RuntimeInputError, match="multiples of 2"):
        student_pipe.generate(PROMPT, height=7, width=8)
    # Inside the profile: 4 frames (max) work.
    assert student_pipe.generate(PROMPT, frames=4).shape == (4, 8, 8, 3)
    # The Python API applies the same input rules as the CLI (spec.inputs).
    for kwargs, message in (({"seed": 1.5}, "seed must be an integer"), ({"guidance": float("nan")}, "guidance must be a finite number")):
        with pytest.raises(RuntimeInputError, match=message):
            teacher_pipe.generate(PROMPT, **kwargs)


def test_overlong_prompt_is_truncated_with_a_warning_and_a_flag(student_pipe):
    long_prompt = " ".join([PROMPT] * 3)
    with pytest.warns(PromptTruncatedWarning, match="tail was dropped"):
        res = student_pipe.run([long_prompt, PROMPT])
    assert res.truncated == [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        student_pipe.generate(PROMPT)  # no warning for a prompt that fits


def test_missing_provider_and_unknown_backend(synthetic_student_bundle):
    with pytest.raises(BackendUnavailableError, match="ort-cuda needs onnxruntime-gpu and an NVIDIA GPU"):
        Pipeline.from_bundle(synthetic_student_bundle, backend="ort-cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        Pipeline.from_bundle(synthetic_student_bundle, backend="directml")
    with pytest.raises(BundleError, match="no int8 UNet"):
        Pipeline.from_bundle(synthetic_student_bundle, precision="int8")
    with pytest.raises(BundleError, match="no TensorRT engine"):  # the bundle lacks it: a BundleError since engines joined the manifest reader
        Pipeline.from_bundle(synthetic_student_bundle, backend="tensorrt")


def test_concurrent_generate_equals_serial(synthetic_student_bundle):
    pipe = Pipeline.from_bundle(synthetic_student_bundle, backend="ort-cpu", threads=1)
    jobs = [(p, s) for p in (PROMPT, "a blue square moving up", "a white diamond staying still") for s in (0, 1)]
    serial = {job: pipe.generate(job[0], seed=job[1]) for job in jobs}
    results: dict = {}

    def worker(my_jobs):
        for _ in range(5):
            for job in my_jobs:
                out = pipe.generate(job[0], seed=job[1])
                results.setdefault(job, []).append(out)

    threads = [threading.Thread(target=worker, args=(jobs[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(v) for v in results.values()) == 5 * len(jobs)
    assert all(np.array_equal(out, serial[job]) for job, outs in results.items() for out in outs)


def _rss_kb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4


def test_thousand_calls_do_not_grow_memory(student_pipe):
    for _ in range(50):
        student_pipe.generate(PROMPT, steps=1)
    before = _rss_kb()
    for _ in range(1000):
        student_pipe.generate(PROMPT, steps=1)
    assert _rss_kb() - before < 2048  # < 2 MB over 1,000 calls


# ------------------------------------------------------------------ TensorRT logic with fakes


class _FakeContext:
    def __init__(self, log):
        self.log, self.shapes, self.addresses = log, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return shape[0] <= 4  # the fake engine's profile: batch <= 4

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        self.log.append("execute")
        return True


class _FakeCuda:
    """Device memory as numpy arrays keyed by fake pointers; the 'engine' doubles its input."""

    def __init__(self, log):
        self.log, self.mem, self.next = log, {}, 1

    def malloc(self, nbytes):
        ptr, self.next = self.next, self.next + 1
        self.mem[ptr] = np.zeros(nbytes, dtype=np.uint8)
        return ptr

    def free(self, ptr):
        del self.mem[ptr]

    def stream(self):
        return "stream"

    def htod(self, dst, src, stream):
        self.mem[dst][:] = src.view(np.uint8).ravel()

    def dtoh(self, dst, src, stream):
        dst.view(np.uint8).ravel()[:] = self.mem[src]

    def synchronize(self, stream):
        self.log.append("sync")

    def begin_capture(self, stream):
        self.log.append("capture")

    def end_capture(self, stream):
        return "graph"

    def launch(self, graph, stream):
        self.log.append("launch")


def test_tensorrt_backend_binds_addresses_and_replays_a_cuda_graph():
    log: list[str] = []
    cuda = _FakeCuda(log)
    backend = TensorRTBackend(cuda=cuda, trt=SimpleNamespace())
    backend.engine = SimpleNamespace(create_execution_context=lambda: _FakeContext(log))
    backend._inputs, backend._dtypes = ["x"], {"x": np.dtype(np.float32), "y": np.dtype(np.float32)}
    binding = backend.allocate({"x": (2, 3)}, {"y": (2, 3)})
    ctx = binding.handle.context
    assert ctx.shapes == {"x": (2, 3)} and set(ctx.addresses) == {"x", "y"}
    for _ in range(3):
        backend.infer(binding)
    # First call runs plainly (TensorRT needs one enqueue after setting shapes), second captures, third replays.
    assert log == ["execute", "sync", "capture", "execute", "launch", "sync", "launch", "sync"]
    backend.release(binding)
    assert cuda.mem == {}
    with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
        backend.allocate({"x": (8, 3)}, {"y": (8, 3)})
    assert isinstance(binding, Binding)


def test_tensorrt_backend_without_tensorrt_names_what_to_install(tmp_path):
    pytest.importorskip("onnxruntime")
    if "tensorrt" in sys.modules or shutil.which("nvidia-smi"):
        pytest.skip("this machine may have TensorRT")
    with pytest.raises(BackendUnavailableError, match="needs TensorRT and an NVIDIA GPU"):
        TensorRTBackend().load(tmp_path / "unet.plan")


# ------------------------------------------------------------------ CLI


def test_cli_generate_writes_a_video_and_dry_run_prints_config(synthetic_student_bundle, tmp_path, capsys):
    from turbo_edge.cli import main

    def gen(*argv: str) -> int:
        return main(["generate", *argv])

    assert gen(PROMPT, "--bundle", str(synthetic_student_bundle), "--dry-run", "--steps", "2") == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["steps"] == 2 and cfg["backend"] == "ort-cpu" and cfg["kind"] == "generate" and cfg["bundle"] == str(synthetic_student_bundle)
    out = tmp_path / "clip.gif"
    assert gen(PROMPT, "--bundle", str(synthetic_student_bundle), "--steps", "2", "--out", str(out), "--backend", "openvino") == 0
    assert out.stat().st_size > 100 and "2 consistency steps" in capsys.readouterr().out
    assert gen("a red dog", "--bundle", str(synthetic_student_bundle), "--out", str(tmp_path / "dog.gif")) == 2
    assert "never trained on: 'dog'" in capsys.readouterr().err and not (tmp_path / "dog.gif").exists()
    before = out.read_bytes()
    assert gen(PROMPT, "--bundle", str(synthetic_student_bundle), "--seed", "7", "--out", str(out)) == 2  # refused before any work
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert gen(PROMPT, "--bundle", str(synthetic_student_bundle), "--seed", "7", "--out", str(out), "--overwrite") == 0
    assert out.read_bytes() != before and sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]
    thesis = tmp_path / "thesis.gif"
    thesis.write_text("not a GIF")
    assert gen(PROMPT, "--bundle", str(synthetic_student_bundle), "--out", str(thesis), "--overwrite") == 2
    assert "is not a GIF file" in capsys.readouterr().err and thesis.read_text() == "not a GIF"


# ------------------------------------------------------------------ against the PyTorch teacher


def test_exported_teacher_bundle_matches_pytorch_teacher(exported_teacher_bundle, tiny_t2v_dir):
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import generate_teacher

    model = load_teacher(tiny_t2v_dir)
    prompts = [PROMPT, "a blue square moving up"]
    ref = generate_teacher(model, prompts, steps=4, guidance=2.0, seed=7)
    pipe = Pipeline.from_bundle(exported_teacher_bundle, backend="ort-cpu", threads=1)
    ours = pipe.generate_batch(prompts, steps=4, seed=7, guidance=2.0)
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2
