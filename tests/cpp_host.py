"""The C++ host (runtime/cpp) for the tests: its build, under a lock, and a call of it.

A plain module, not a conftest: a test imports ``run_host`` from here by name, which ``from conftest import`` could
not promise once more than one test folder has a conftest.py (the first one imported answers to ``conftest``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP_BUILD = Path(os.environ.get("TURBO_EDGE_CPP_BUILD", ROOT / "build" / "runtime_cpp"))  # gitignored; reused (CMake rebuilds what changed)


def build_host() -> Path:
    """``runtime/cpp/build.sh`` into ``CPP_BUILD`` (CMake rebuilds what changed), one worker at a time; the host's path."""
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
