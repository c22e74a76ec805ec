"""The C API (runtime/cpp/include/turbo_edge/turbo_edge.h) over the installed libturbo_edge: the plain-C example app
built with find_package against the install prefix, the library called directly through ctypes, and the C++
thread-safety check. Frames are compared with the Python runtime's."""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from dit_bundles import FACTOR, LH, LW, make_dit_range_bundle, teacher_contract

import turbo_edge
from turbo_edge.runtime.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / "build" / "install"  # gitignored, like build/runtime_cpp
APP_BUILD = ROOT / "build" / "c_app"
PROMPT = "a red circle moving left"

TE_OK, TE_ERR_INVALID_ARGUMENT, TE_ERR_BUNDLE, TE_ERR_INPUT, TE_ERR_BACKEND, TE_ERR_CANCELLED = 0, 1, 2, 3, 4, 5


def _cmd(*args: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="session")
def installed(host: Path) -> Path:
    """The library installed to build/install, and examples/c_app built against it with find_package."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) for examples/c_app; install gcc")
    _cmd("cmake", "--install", str(host.parent), "--prefix", str(PREFIX))
    _cmd("cmake", "-S", str(ROOT / "examples" / "c_app"), "-B", str(APP_BUILD), f"-DCMAKE_PREFIX_PATH={PREFIX}")
    _cmd("cmake", "--build", str(APP_BUILD))
    return PREFIX


# ------------------------------------------------------------------ ctypes view of turbo_edge.h

PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class PipelineParams(ctypes.Structure):
    _fields_ = [("bundle", ctypes.c_char_p), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("threads", ctypes.c_int), ("verify", ctypes.c_int), ("decoder", ctypes.c_char_p)]  # decoder: appended in 0.2


class GenerateParams(ctypes.Structure):
    _fields_ = [("steps", ctypes.c_int), ("use_default_guidance", ctypes.c_int), ("guidance", ctypes.c_double),
                ("seed", ctypes.c_uint64), ("progress", PROGRESS), ("user_data", ctypes.c_void_p),
                ("frames", ctypes.c_int)]  # frames: appended in 0.3


@pytest.fixture(scope="session")
def lib(installed: Path) -> ctypes.CDLL:
    so = ctypes.CDLL(str(installed / "lib" / "libturbo_edge.so"))
    p, c = ctypes.c_void_p, ctypes.c_void_p
    signatures = {
        "te_version": (ctypes.c_char_p, []), "te_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "te_pipeline_default_params": (PipelineParams, []), "te_generate_default_params": (GenerateParams, []),
        "te_pipeline_open": (ctypes.c_int, [ctypes.POINTER(PipelineParams), ctypes.POINTER(p)]),
        "te_pipeline_close": (None, [p]),
        "te_generate": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.POINTER(GenerateParams), ctypes.POINTER(c)]),
        "te_generate_batch": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t, ctypes.POINTER(GenerateParams),
                                             ctypes.POINTER(c)]),
        "te_clip_frames": (ctypes.c_int, [c]), "te_clip_height": (ctypes.c_int, [c]), "te_clip_width": (ctypes.c_int, [c]),
        "te_clip_steps": (ctypes.c_int, [c]), "te_clip_data": (ctypes.POINTER(ctypes.c_uint8), [c]),
        "te_clip_size": (ctypes.c_size_t, [c]), "te_clip_free": (None, [c]), "te_last_error": (ctypes.c_char_p, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        getattr(so, name).restype, getattr(so, name).argtypes = restype, argtypes
    return so


def _open(lib: ctypes.CDLL, bundle: Path | None, **fields) -> tuple[int, ctypes.c_void_p]:
    params = lib.te_pipeline_default_params()
    params.bundle = str(bundle).encode() if bundle is not None else None
    for k, v in fields.items():
        setattr(params, k, v)
    out = ctypes.c_void_p(1)  # not NULL: a failed open must clear it
    return lib.te_pipeline_open(ctypes.byref(params), ctypes.byref(out)), out


def _error(lib: ctypes.CDLL, pipe: ctypes.c_void_p | None) -> str:
    return lib.te_last_error(pipe).decode()


def _frames(lib: ctypes.CDLL, clip: ctypes.c_void_p) -> np.ndarray:
    shape = (lib.te_clip_frames(clip), lib.te_clip_height(clip), lib.te_clip_width(clip), 3)
    assert lib.te_clip_size(clip) == math.prod(shape)
    frames = np.ctypeslib.as_array(lib.te_clip_data(clip), shape=shape).copy()
    lib.te_clip_free(clip)
    return frames


def _generate(lib: ctypes.CDLL, pipe: ctypes.c_void_p, prompt: str | None, params: GenerateParams | None = None) -> tuple[int, np.ndarray | None]:
    out = ctypes.c_void_p(1)
    status = lib.te_generate(pipe, prompt.encode() if prompt is not None else None, ctypes.byref(params) if params else None,
                             ctypes.byref(out))
    if status != TE_OK:
        assert out.value is None, "a failed call must leave *out NULL"
        return status, None
    return status, _frames(lib, out)


@pytest.fixture()
def student(lib: ctypes.CDLL, synthetic_student_bundle: Path):
    status, pipe = _open(lib, synthetic_student_bundle)
    assert status == TE_OK, _error(lib, None)
    yield pipe
    lib.te_pipeline_close(pipe)


# ------------------------------------------------------------------ the example app, built against the install


@pytest.mark.parametrize("which", ["synthetic_teacher_bundle", "synthetic_student_bundle", "exported_teacher_bundle"])
def test_c_app_frames_equal_python(installed, which, request, tmp_path):
    bundle = request.getfixturevalue(which)
    proc = subprocess.run([str(APP_BUILD / "turbo_edge_c_app"), str(bundle), PROMPT, "3", str(tmp_path / "clip")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    py = Pipeline.from_bundle(bundle, backend="openvino").generate(PROMPT, seed=3)
    c = np.fromfile(tmp_path / "clip.rgb", dtype=np.uint8).reshape(py.shape)
    assert np.abs(c.astype(int) - py.astype(int)).max() <= 1
    assert f"frames={py.shape[0]} height={py.shape[1]} width={py.shape[2]} " in proc.stdout
    header = f"P6\n{py.shape[2]} {py.shape[1]}\n255\n".encode()
    assert (tmp_path / "clip.ppm").read_bytes() == header + c[0].tobytes()


def test_c_app_reports_errors_with_the_library_message(installed, synthetic_student_bundle, tmp_path):
    app = str(APP_BUILD / "turbo_edge_c_app")
    proc = subprocess.run([app, str(tmp_path / "missing"), PROMPT, "0", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 1 and "is not a bundle (no manifest.json)" in proc.stderr and "TE_ERR_BUNDLE" in proc.stderr
    proc = subprocess.run([app, str(synthetic_student_bundle), "a red dog", "0", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 1 and "never trained on: 'dog'" in proc.stderr and "TE_ERR_INPUT" in proc.stderr
    assert not (tmp_path / "o.rgb").exists()


# ------------------------------------------------------------------ the installed package


def test_library_exports_only_te_symbols(installed):
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is missing")
    so = installed / "lib" / "libturbo_edge.so"
    out = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True, check=True).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert names and all(n.startswith("te_") for n in names), [n for n in names if not n.startswith("te_")][:10]
    assert {"te_pipeline_open", "te_generate", "te_generate_batch", "te_last_error", "te_clip_data", "te_version"} <= set(names)
    soname = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True).stdout if shutil.which("readelf") else ""
    if soname:
        assert "Library soname: [libturbo_edge.so.0.3]" in soname


def test_installed_headers_version_and_no_internals(installed, lib):
    headers = sorted(p.name for p in (installed / "include" / "turbo_edge").iterdir())
    assert headers == ["turbo_edge.h", "turbo_edge.hpp"]  # runtime.hpp, json.hpp, ... stay private
    text = (installed / "include" / "turbo_edge" / "turbo_edge.h").read_text()
    macros = [re.search(rf"#define TE_VERSION_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    assert ".".join(macros) == turbo_edge.__version__ == lib.te_version().decode()
    assert (installed / "lib" / "cmake" / "turbo_edge" / "turbo_edgeConfigVersion.cmake").is_file()


# ------------------------------------------------------------------ errors: codes and one-line messages


def test_open_errors(lib, synthetic_student_bundle, tmp_path):
    cases = [
        ((tmp_path / "missing", {}), TE_ERR_BUNDLE, "is not a bundle (no manifest.json); create one with `turbo-edge export"),
        ((None, {}), TE_ERR_INVALID_ARGUMENT, "te_pipeline_params.bundle is not set"),
        ((synthetic_student_bundle, {"threads": 0}), TE_ERR_INPUT, "threads must be an integer in [1, "),
        ((synthetic_student_bundle, {"precision": b"fp8"}), TE_ERR_INPUT, "precision must be one of fp32, fp16, int8, got 'fp8'"),
        ((synthetic_student_bundle, {"backend": b"ort-cpu"}), TE_ERR_BACKEND, "backend 'ort-cpu' is not built into the C++ runtime"),
        ((synthetic_student_bundle, {"backend": None}), TE_ERR_INVALID_ARGUMENT, "backend is NULL"),
    ]
    for (bundle, fields), code, message in cases:
        status, out = _open(lib, bundle, **fields)
        error = _error(lib, None)
        assert (status, out.value) == (code, None) and message in error and "\n" not in error, (fields, error)
    bad = shutil.copytree(synthetic_student_bundle, tmp_path / "changed")
    with open(bad / "unet.onnx", "ab") as f:
        f.write(b"\0")
    status, _ = _open(lib, bad)
    assert status == TE_ERR_BUNDLE and "unet.onnx" in _error(lib, None) and "changed after export" in _error(lib, None)
    out = ctypes.c_void_p(1)
    assert lib.te_pipeline_open(None, ctypes.byref(out)) == TE_ERR_INVALID_ARGUMENT and out.value is None
    assert "params is NULL" in _error(lib, None)
    params = lib.te_pipeline_default_params()
    assert lib.te_pipeline_open(ctypes.byref(params), None) == TE_ERR_INVALID_ARGUMENT and "out is NULL" in _error(lib, None)
    assert lib.te_status_name(TE_ERR_CANCELLED) == b"TE_ERR_CANCELLED"


def test_generate_errors(lib, student):
    def params(**fields) -> GenerateParams:
        p = lib.te_generate_default_params()
        for k, v in fields.items():
            setattr(p, k, v)
        return p

    cases = [
        (PROMPT, params(steps=3), TE_ERR_INPUT, "steps=3 is not supported by this bundle; use one of: 1 2 4"),
        (PROMPT, params(steps=-1), TE_ERR_INPUT, "steps must be 0 (the bundle's default) or one of the bundle's supported steps, got -1"),
        ("  ", None, TE_ERR_INPUT, "empty prompt: describe the video"),
        ("a red dog", None, TE_ERR_INPUT, "never trained on: 'dog'"),
        ("red " * 600, None, TE_ERR_INPUT, "prompt is 2400 characters, over the limit of 2000"),
        (PROMPT, params(seed=2**63), TE_ERR_INPUT, "seed must be an integer in [0, 2**63), got 9223372036854775808"),
        (PROMPT, params(use_default_guidance=0), TE_ERR_INPUT, "guidance must be a finite number, got nan"),
        (PROMPT, params(use_default_guidance=0, guidance=150.0), TE_ERR_INPUT, "guidance must be in [0, 100], got 150"),
        (PROMPT, params(guidance=3.0), TE_ERR_INVALID_ARGUMENT, "guidance is set but use_default_guidance is nonzero"),
        (None, None, TE_ERR_INVALID_ARGUMENT, "te_generate: prompt is NULL"),
    ]
    for prompt, p, code, message in cases:
        status, frames = _generate(lib, student, prompt, p)
        error = _error(lib, student)
        assert status == code and message in error and "\n" not in error, (prompt, error)
    assert lib.te_generate(student, PROMPT.encode(), None, None) == TE_ERR_INVALID_ARGUMENT and "out is NULL" in _error(lib, student)
    assert _generate(lib, None, PROMPT)[0] == TE_ERR_INVALID_ARGUMENT and "pipeline is NULL" in _error(lib, None)
    # Postcondition: the failures left the pipeline usable, and a valid guidance is taken.
    status, frames = _generate(lib, student, PROMPT, params(use_default_guidance=0, guidance=2.0))
    assert status == TE_OK and frames.shape == (3, 8, 8, 3)


def test_error_messages_are_per_thread(lib, student):
    """Two threads failing on one pipeline each read their own message (ctypes releases the GIL in the calls)."""
    barrier, seen = threading.Barrier(2), {}

    def worker(prompt: str) -> None:
        status, _ = _generate(lib, student, prompt)
        barrier.wait()  # both have failed before either reads
        seen[prompt] = (status, _error(lib, student))

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("a red dog", "  ")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a red dog"][0] == TE_ERR_INPUT and "'dog'" in seen["a red dog"][1]
    assert seen["  "][0] == TE_ERR_INPUT and "empty prompt" in seen["  "][1]


# ------------------------------------------------------------------ progress, cancel, batch, threads


def test_progress_reports_each_step_and_cancels(lib, student):
    reports: list[tuple[int, int]] = []

    @PROGRESS
    def watch(step, total, user):
        reports.append((step, total))
        return 0

    @PROGRESS
    def stop_after_two(step, total, user):
        reports.append((step, total))
        return 1 if step == 2 else 0

    params = lib.te_generate_default_params()
    params.progress = watch
    status, watched = _generate(lib, student, PROMPT, params)
    assert status == TE_OK and reports == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert np.array_equal(watched, _generate(lib, student, PROMPT)[1])  # watching changes nothing
    reports.clear()
    params.progress = stop_after_two
    status, frames = _generate(lib, student, PROMPT, params)
    assert status == TE_ERR_CANCELLED and frames is None and reports == [(1, 4), (2, 4)]
    assert "cancelled by the progress callback after step 2 of 4" in _error(lib, student)


def test_batch_equals_single_calls(lib, student):
    prompts = [PROMPT, "a blue square moving right", PROMPT]
    params = lib.te_generate_default_params()
    params.seed, params.steps = 5, 2
    reports: list[tuple[int, int]] = []

    @PROGRESS
    def watch(step, total, user):
        reports.append((step, total))
        return 0

    params.progress = watch
    texts = (ctypes.c_char_p * 3)(*[p.encode() for p in prompts])
    outs = (ctypes.c_void_p * 3)()
    assert lib.te_generate_batch(student, texts, 3, ctypes.byref(params), outs) == TE_OK, _error(lib, student)
    assert reports == [(k, 6) for k in range(1, 7)]
    batch = [_frames(lib, ctypes.c_void_p(o)) for o in outs]
    params.progress = PROGRESS()
    for prompt, clip in zip(prompts, batch):
        assert np.array_equal(clip, _generate(lib, student, prompt, params)[1])
    assert not np.array_equal(batch[0], batch[1])
    # All or nothing: a bad second prompt leaves every out NULL and names its index.
    texts[1] = b"a red dog"
    outs = (ctypes.c_void_p * 3)(1, 1, 1)
    assert lib.te_generate_batch(student, texts, 3, ctypes.byref(params), outs) == TE_ERR_INPUT
    assert list(outs) == [None, None, None] and _error(lib, student).startswith("prompts[1]: prompt uses words")
    assert lib.te_generate_batch(student, texts, 0, ctypes.byref(params), outs) == TE_ERR_INPUT and "no prompts" in _error(lib, student)


def test_threads_on_one_pipeline_equal_serial_calls(host, synthetic_teacher_bundle):
    """runtime/cpp/tests/capi_check.cpp: 8 calls from 4 threads on one Session (and on two), byte-equal to serial."""
    proc = subprocess.run([str(host.parent / "turbo_edge_capi_check"), str(synthetic_teacher_bundle), "4", "8"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: 8 calls on 4 threads equal serial calls")


# ------------------------------------------------------------------ decoder variants (te_pipeline_params.decoder)


def test_open_params_choose_the_decoder(lib, synthetic_tiny_bundle, synthetic_student_bundle):
    params = lib.te_pipeline_default_params()
    assert params.decoder is None and params.verify == 1 and params.threads == 1  # appended: the fields before keep their values
    assert PipelineParams.decoder.offset == ctypes.sizeof(ctypes.c_void_p) * 3 + 2 * ctypes.sizeof(ctypes.c_int)
    for decoder in (None, b"tiny"):
        status, pipe = _open(lib, synthetic_tiny_bundle, decoder=decoder)
        assert status == TE_OK, _error(lib, None)
        status, frames = _generate(lib, pipe, PROMPT, _seeded(lib, 3))
        lib.te_pipeline_close(pipe)
        py = Pipeline.from_bundle(synthetic_tiny_bundle, backend="openvino", decoder=decoder and decoder.decode()).generate(PROMPT, seed=3)
        assert status == TE_OK and np.abs(frames.astype(int) - py.astype(int)).max() <= 1
    status, pipe = _open(lib, synthetic_student_bundle, decoder=b"tiny")
    assert status == TE_ERR_BUNDLE and pipe.value is None
    assert _error(lib, None).startswith("this bundle has no 'tiny' decoder; it has ['full']")


def _seeded(lib: ctypes.CDLL, seed: int) -> GenerateParams:
    gp = lib.te_generate_default_params()
    gp.seed = seed
    return gp


# ------------------------------------------------------------------ the clip length (te_generate_params.frames)


@pytest.fixture(scope="module")
def range_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/dit_bundles.py's hand-built DiT bundle for clip lengths 5 to 13 (default 9), no torch."""
    return make_dit_range_bundle(tmp_path_factory.mktemp("capi_range") / "dit", teacher_contract())[0]


def test_generate_params_choose_the_clip_length(lib, range_bundle):
    gp = lib.te_generate_default_params()
    assert gp.frames == 0 and gp.steps == 0 and gp.use_default_guidance == 1  # appended: the fields before keep their values
    assert GenerateParams.frames.offset == GenerateParams.user_data.offset + ctypes.sizeof(ctypes.c_void_p)
    status, pipe = _open(lib, range_bundle)
    assert status == TE_OK, _error(lib, None)
    try:
        py = Pipeline.from_bundle(range_bundle, backend="openvino")
        for frames in (5, 13, 0):
            gp = _seeded(lib, 3)
            gp.steps, gp.frames = 2, frames
            status, clip = _generate(lib, pipe, "a red circle left", gp)  # _frames checks te_clip_size against the shape
            want = py.generate("a red circle left", steps=2, seed=3, frames=frames or None)
            assert status == TE_OK and clip.shape == want.shape == (frames or 9, LH * FACTOR, LW * FACTOR, 3), _error(lib, pipe)
            assert np.abs(clip.astype(int) - want.astype(int)).max() <= 1 and want.std() > 10
        for frames in (10, 17, 1):  # Python's one-line message, word for word
            with pytest.raises(ValueError) as err:
                py.generate("a red", frames=frames)
            gp = lib.te_generate_default_params()
            gp.frames = frames
            status, clip = _generate(lib, pipe, "a red", gp)
            assert (status, clip, _error(lib, pipe)) == (TE_ERR_INPUT, None, str(err.value))
        gp.frames = -1
        assert _generate(lib, pipe, "a red", gp)[0] == TE_ERR_INPUT
        assert _error(lib, pipe) == "frames must be 0 (the bundle's default) or a clip length the bundle serves, got -1"
    finally:
        lib.te_pipeline_close(pipe)


def test_c_app_takes_the_clip_length(installed, range_bundle, tmp_path):
    app = str(APP_BUILD / "turbo_edge_c_app")
    proc = subprocess.run([app, str(range_bundle), "a red circle left", "3", str(tmp_path / "clip"), "13"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    py = Pipeline.from_bundle(range_bundle, backend="openvino").generate("a red circle left", seed=3, frames=13)
    c = np.fromfile(tmp_path / "clip.rgb", dtype=np.uint8).reshape(py.shape)
    assert f"frames=13 height={LH * FACTOR} width={LW * FACTOR} " in proc.stdout and np.abs(c.astype(int) - py.astype(int)).max() <= 1
    proc = subprocess.run([app, str(range_bundle), "a red", "0", str(tmp_path / "o"), "17"], capture_output=True, text=True)
    assert proc.returncode == 1 and "frames 17 is outside this bundle's clip lengths, 5 to 13 frames" in proc.stderr
    assert "TE_ERR_INPUT" in proc.stderr and not (tmp_path / "o.rgb").exists()
