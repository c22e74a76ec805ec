"""benchmarks/bench_ddp.py: its window / difference / tolerance arithmetic on hand-made curves, and (``slow``) the
real comparison, ``accelerate launch --num_processes 2`` against 1 process, at a reduced size on the tiny teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_ddp", ROOT / "benchmarks" / "bench_ddp.py")
bd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bd)


def test_window_means_drop_the_short_last_window():
    assert bd.window_means([1.0, 3.0, 2.0, 4.0, 9.0], 2) == [2.0, 3.0]


def test_tolerance_is_factor_times_the_largest_seed_to_seed_difference():
    curves = {"ref": [1.0, 2.0], "s1": [1.1, 2.0], "s2": [1.0, 2.4], "ddp": [1.0, 2.4]}
    got = bd.compare(curves, "ref", ["s1", "s2"], "ddp", 1.5)
    assert got["seed_to_seed_max_rel_diff"] == pytest.approx({"ref vs s1": 0.1 / 1.1, "ref vs s2": 0.4 / 2.4, "s1 vs s2": 0.4 / 2.4})
    assert got["tolerance"] == pytest.approx(0.25) and got["candidate_max_rel_diff"] == pytest.approx(0.2) and got["pass"]
    assert not bd.compare({**curves, "ddp": [1.0, 2.6]}, "ref", ["s1", "s2"], "ddp", 1.5)["pass"]  # 0.3 over 0.25


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch_and_read_no_sample_twice(tiny_t2v_dir: Path, tmp_path: Path):
    pytest.importorskip("accelerate.commands.launch", reason="the 2-process run needs accelerate's launcher")
    out = tmp_path / "ddp.json"
    assert bd.main(["--teacher", str(tiny_t2v_dir), "--num", "13", "--steps", "12", "--window", "4", "--spread-seeds", "1,2",
                    "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    ddp = result["runs"]["2proc_seed0"]
    assert ddp["processes"] == 2 and ddp["per_process_batch"] == 2 and ddp["reads"]["world_size"] == 2
    assert len(ddp["window_means"]) == 3 and ddp["reads"]["finished_epochs"] >= 2  # 13 clips, 2 a process a step
    assert all(result["reads_pass"].values()) and result["pass"]["no_sample_read_twice_in_an_epoch"]
    curves = result["curves"]
    assert 0 < curves["tolerance"] and curves["pass"] == (curves["candidate_max_rel_diff"] <= curves["tolerance"])
    assert curves["pass"], curves
    assert any("accelerate.commands.launch --multi_gpu --num_processes 2" in c for c in result["commands"])
