"""Two real processes (``accelerate launch --multi_gpu --num_processes 2``, gloo on the CPU: accelerate's ``--cpu``
launches one process) distil over a DATA: each checkpoint records both ranks' positions, and a run killed after
step 1 and resumed ends with the uninterrupted run's weights (-m slow: four launches, ~2 minutes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from turbo_edge.core import train_data
from turbo_edge.core.dataset import prepare
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.prepared import PreparedData
from turbo_edge.spec.configs import DataPrepareConfig

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _launch(teacher: Path, data: Path, out: Path, steps: int) -> None:
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate's launcher is not on PATH")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "turbo_edge.cli", "distill", "--teacher", str(teacher), "--out", str(out), "--data", str(data),
           "--steps", str(steps), "--batch", "4", "--lora-rank", "4", "--w-embedding-dim", "8", "--checkpoint-every", "1", "--log-every", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_processes_record_both_positions_and_resume_exactly(tiny_t2v_dir: Path, tmp_path: Path):
    from turbo_edge import cli

    assert cli.main(["world", "export", "--num", "12", "--out", str(tmp_path / "videos"), "--seed", "5"]) == 0
    data = tmp_path / "data"
    prepare(DataPrepareConfig(source=str(tmp_path / "videos"), model=str(tiny_t2v_dir), out=str(data), shard_size=2, batch=4))
    _launch(tiny_t2v_dir, data, tmp_path / "ref", 2)
    state = json.loads((tmp_path / "ref" / "ckpt" / "step_0000002" / "state.json").read_text())["data"]
    expected = train_data.DataSource(PreparedData(data), seed=0).positions_after(2, 2, 2)
    assert state["world_size"] == 2 and state["batch"] == 2 and state["positions"] == [p.to_dict() for p in expected]
    _launch(tiny_t2v_dir, data, tmp_path / "run", 1)
    _launch(tiny_t2v_dir, data, tmp_path / "run", 2)  # resumes both ranks from step 1
    a, b = load_teacher(tmp_path / "ref" / "student"), load_teacher(tmp_path / "run" / "student")
    for (k, va), vb in zip(a.unet.state_dict().items(), b.unet.state_dict().values()):
        assert torch.equal(va, vb), k
