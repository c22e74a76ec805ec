"""Fixtures for the runtime tests: bundles in the export stage's format.

``synthetic bundles`` are hand-built ONNX graphs (onnx.helper, no torch, milliseconds) with the bundle's exact
I/O names and dtypes, so pipeline logic, errors, threads and the C++ host are tested without waiting for an
export. ``exported_teacher_bundle`` is the real thing: ``turbo_edge.export.export_bundle`` on the tiny model.
pytest picks them up for every test under tests/runtime.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cpp_host import build_host
from synthetic_bundles import make_synthetic_bundle


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


@pytest.fixture(scope="session")
def host() -> Path:
    """The C++ host (runtime/cpp), built with CMake against the openvino wheel (``cpp_host.build_host``)."""
    return build_host()
