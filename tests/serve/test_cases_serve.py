"""Case table: the serving lifecycle without a server. The launcher's child dies with ``turbo-edge serve`` (SIGKILL
included), runtime refusals map to Triton's INVALID_ARG (HTTP 400) and other failures to 500, a cancelled request
stops before its next row, and the flags that size a request are bounded. The same behaviours against the real
tritonserver are in ``test_serve.py`` (SIGKILL, HTTP 400)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
from hostile import Case, params, run

from turbo_edge.serve import handler
from turbo_edge.spec.configs import ServeConfig
from turbo_edge.spec.errors import RuntimeInputError

ROOT = Path(__file__).resolve().parents[2]

# A launcher that starts a long-lived child the way TritonServer.start does (die_with_parent), prints its pid, waits.
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    from turbo_edge.serve.server import die_with_parent
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                             preexec_fn=die_with_parent(os.getpid()) if sys.argv[1] == "guarded" else None)
    print(child.pid, flush=True)
    time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie (reaped by init soon) is dead
        return fh.read().split(")")[-1].split()[0] != "Z"


def launcher_killed(guarded: bool):
    def act(tmp: Path) -> str:
        if not sys.platform.startswith("linux"):
            pytest.skip("PR_SET_PDEATHSIG is Linux's")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "guarded" if guarded else "plain"], stdout=subprocess.PIPE, text=True, env=env)
        child = int(proc.stdout.readline())
        try:
            proc.kill()  # SIGKILL: no handler of the launcher's runs
            proc.wait()
            deadline = time.monotonic() + (10 if guarded else 1)  # unguarded: a second shows it is still there
            while _alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            return "accepted" if not _alive(child) else "counted: outlived"
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
    return act


class _FakeTritonError:
    INVALID_ARG, UNAVAILABLE, CANCELLED, INTERNAL = "INVALID_ARG", "UNAVAILABLE", "CANCELLED", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


def error_code(exc: Exception):
    def act(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.SimpleNamespace(TritonError=_FakeTritonError))
        monkeypatch.delitem(sys.modules, "turbo_edge.serve.triton_model", raising=False)  # imported afresh, dropped after
        model = importlib.import_module("turbo_edge.serve.triton_model")
        err = model._error(exc)
        assert "\n" not in err.message
        return f"counted: {err.code}"
    return act


class _Pipe:
    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompt, steps=None, seed=0, guidance=None, frames=None, cancelled=None):
        self.calls += 1
        return np.zeros((2, 4, 4, 3), np.uint8)


def cancelled_mid_row(tmp: Path) -> str:
    """The runtime asks ``cancelled`` between denoiser calls too: a one-row request stops inside its row."""
    from synthetic_bundles import make_synthetic_bundle

    from turbo_edge.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(make_synthetic_bundle(tmp / "bundle", "consistency"), backend="ort-cpu", threads=1)
    asked = []
    try:
        handler.run_request(pipe, {"prompt": np.array([[b"a red circle moving left"]], dtype=object), "steps": np.array([[4]], np.int32)},
                            cancelled=lambda: asked.append(1) or len(asked) > 2)
    except handler.Cancelled as exc:
        return f"refused: {exc}"
    finally:
        pipe.close()
    return "accepted"


def cancelled_after(rows_before_cancel: int):
    def act(tmp: Path) -> str:
        pipe = _Pipe()
        tensors = {"prompt": np.array([[b"a red circle moving left"]] * 4, dtype=object)}
        try:
            handler.run_request(pipe, tensors, cancelled=lambda: pipe.calls >= rows_before_cancel)
        except handler.Cancelled as exc:
            assert pipe.calls == rows_before_cancel  # no row ran after the cancellation was seen
            return f"refused: {exc}"
        return "accepted"
    return act


def not_cancelled(tmp: Path) -> str:
    pipe = _Pipe()
    frames = handler.run_request(pipe, {"prompt": np.array([[b"x"]] * 3, dtype=object)}, cancelled=lambda: False)
    assert frames.shape == (3, 2, 4, 4, 3) and pipe.calls == 3
    return "accepted"


def serve_config(**kw):
    def act(tmp: Path) -> str:
        ServeConfig.make(bundle="b", **kw)
        return "accepted"
    return act


CASES = [
    Case("serve", "sigkill_launcher_child_dies", launcher_killed(True), "accepted"),
    Case("serve", "sigkill_unguarded_child_outlives", launcher_killed(False), "counted: outlived"),  # what the guard fixes
    Case("serve", "runtime_refusal_is_invalid_arg", error_code(RuntimeInputError("empty prompt: describe the video")),
         "counted: INVALID_ARG"),
    Case("serve", "malformed_request_is_invalid_arg", error_code(ValueError("the request has no 'prompt' input")), "counted: INVALID_ARG"),
    Case("serve", "bug_is_internal", error_code(KeyError("boom")), "counted: INTERNAL"),
    Case("serve", "cancelled_is_cancelled", error_code(handler.Cancelled("gone")), "counted: CANCELLED"),
    Case("serve", "cancelled_request_stops", cancelled_after(1), "refused: cancelled by its client after 1 of 4 rows"),
    Case("serve", "uncancelled_request_runs", not_cancelled, "accepted"),
    Case("serve", "cancelled_inside_a_row", cancelled_mid_row,
         "refused: the request was cancelled by its client in row 1 of 1: cancelled after 1 of 4 denoiser calls"),
    Case("serve", "max_batch_absurd", serve_config(max_batch=100000), "refused: --max-batch must be an integer in [1, 64]"),
    Case("serve", "max_batch_zero", serve_config(max_batch=0), "refused: --max-batch must be an integer in [1, 64]"),
    Case("serve", "instances_absurd", serve_config(instances=10**6), "refused: --instances must be an integer in [1, 64]"),
    Case("serve", "max_batch_ok", serve_config(max_batch=64), "accepted"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_serve_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (tmp_path, monkeypatch) if case.act.__code__.co_argcount == 2 else (tmp_path,)
    run(case, *args)
