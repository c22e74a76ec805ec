"""Fixtures for the runtime tests: bundles in the export stage's format.

``synthetic bundles`` are hand-built ONNX graphs (onnx.helper, no torch, milliseconds) with the bundle's exact
I/O names and dtypes, so pipeline logic, errors, threads and the C++ host are tested without waiting for an
export. ``exported_teacher_bundle`` is the real thing: ``turbo_edge.export.export_bundle`` on the tiny model.
pytest picks them up for every test under tests/runtime.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic_bundles import SYN, make_synthetic_bundle  # noqa: F401  (re-exported: the runtime tests import them from here)


@pytest.fixture(scope="session")
def synthetic_teacher_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "syn_teacher", "ddim_cfg")


@pytest.fixture(scope="session")
def synthetic_student_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "syn_student", "consistency")


@pytest.fixture(scope="session")
def synthetic_tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_student_bundle`` with a tiny decoder variant beside the full one (the full the default)."""
    return make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "syn_tiny", "consistency", decoders=("full", "tiny"))


@pytest.fixture(scope="session")
def synthetic_json_student_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_student_bundle`` with its tokenizer as transformers 5 saves it: tokenizer.json, hashed in the manifest."""
    pytest.importorskip("transformers", reason="transformers writes the tokenizer.json (this run blocks it: pytest -p no_torch)")
    return make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "syn_student_json", "consistency", tokenizer_json=True)


@pytest.fixture(scope="session")
def exported_teacher_bundle(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export stage's bundle of the tiny random teacher (fp32 only: the fastest export)."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    from turbo_edge import export
    from turbo_edge.spec.configs import ExportConfig

    out = tmp_path_factory.mktemp("bundles") / "tiny_teacher"
    cfg = ExportConfig(model=str(tiny_t2v_dir), out=str(out), precisions=("fp32",), supported_steps=(2, 4), default_steps=4,
                       openvino_check=False, threads=1)
    export.export_bundle(tiny_t2v_dir, out, cfg)
    return out


ROOT = Path(__file__).resolve().parents[2]
CPP_BUILD = Path(os.environ.get("TURBO_EDGE_CPP_BUILD", ROOT / "build" / "runtime_cpp"))  # gitignored; reused (CMake rebuilds what changed)


@pytest.fixture(scope="session")
def host() -> Path:
    """The C++ host (runtime/cpp), built with CMake against the openvino wheel."""
    missing = [t for t in ("cmake", "g++", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"C++ build tools missing: {missing}; run the README's install line (its ./runtime/cpp/build.sh installs them with apt-get)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JOBS": "1"}
    CPP_BUILD.mkdir(parents=True, exist_ok=True)
    with open(CPP_BUILD.parent / f".{CPP_BUILD.name}.lock", "w") as lock:  # two test workers: one build at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(ROOT / "runtime" / "cpp" / "build.sh"), str(CPP_BUILD)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return CPP_BUILD / "turbo_edge_generate"


def run_host(host: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(host), *args], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
