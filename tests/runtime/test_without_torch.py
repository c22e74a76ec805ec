"""The runtime and ``turbo-edge generate --bundle`` on a machine without torch: a subprocess where importing
torch, diffusers, transformers or tensorrt fails, as it does where they are not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving left"


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import no_torch; "
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300)


def test_blocked_import_really_fails():
    proc = _run_blocked("import torch")
    assert proc.returncode != 0 and "blocked by tests/no_torch.py" in proc.stderr


def test_runtime_imports_and_generates_without_torch(synthetic_student_bundle, tmp_path):
    out = tmp_path / "clip.gif"
    code = (
        "import turbo_edge.runtime as rt, turbo_edge.cli as cli; "
        f"frames = rt.Pipeline.from_bundle({str(synthetic_student_bundle)!r}).generate({PROMPT!r}, steps=2, seed=3); "
        f"rc = cli.main(['generate', {PROMPT!r}, '--bundle', {str(synthetic_student_bundle)!r}, '--out', {str(out)!r}]); "
        "print(__import__('json').dumps([list(frames.shape), rc]))"
    )
    proc = _run_blocked(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shape, rc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert shape == [3, 8, 8, 3] and rc == 0 and out.stat().st_size > 100


def test_cli_help_and_dry_run_need_no_torch():
    proc = _run_blocked("import turbo_edge.cli as cli; raise SystemExit(cli.main(['distill', '--steps', '3', '--dry-run']))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["loop"]["steps"] == 3
