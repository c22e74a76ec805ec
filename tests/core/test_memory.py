"""Config sanity before allocation: a model's memory is estimated from its configs and refused with the numbers."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from turbo_edge.core.memory import GiB, check_fits, estimate
from turbo_edge.core.pipeline_io import ModelLayoutError, load_teacher, resolve_model_path


def test_the_estimate_counts_the_parameters_the_model_loads():
    path = resolve_model_path("builtin")
    est = estimate(path)
    model = load_teacher(path)
    for name in ("unet", "vae", "text_encoder"):
        assert est.parameters[name] == sum(p.numel() for p in getattr(model, name).parameters())
    assert est.weight_bytes == 4 * sum(est.parameters.values())
    assert est.activation_bytes > 0
    assert estimate(path, bytes_per_parameter=2).weight_bytes == est.weight_bytes // 2


def test_a_config_bomb_is_refused_with_the_numbers_before_any_allocation(tmp_path):
    bomb = shutil.copytree(resolve_model_path("builtin"), tmp_path / "bomb")
    cfg_file = bomb / "unet" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["block_out_channels"] = [100000] * len(cfg["block_out_channels"])
    cfg_file.write_text(json.dumps(cfg))
    start = time.perf_counter()
    with pytest.raises(ModelLayoutError, match=r"needs ~\d+\.\d GiB \(unet \d+\.\d+ B, vae .* parameters at 4 bytes.* GiB available"):
        load_teacher(bomb)
    assert time.perf_counter() - start < 30  # the meta device allocates nothing (was: a 160 GB allocation)


def test_check_fits_compares_with_the_memory_given():
    path = resolve_model_path("builtin")
    est = check_fits(path, available=64 * GiB)
    with pytest.raises(ModelLayoutError, match=r"has 0\.0 GiB available"):
        check_fits(path, available=est.total_bytes)  # the headroom leaves less than the estimate


def test_a_config_that_cannot_build_is_one_line(tmp_path):
    broken = shutil.copytree(resolve_model_path("builtin"), tmp_path / "broken")
    (broken / "vae" / "config.json").write_text("{not json")
    with pytest.raises(ModelLayoutError, match=r"vae/config.json is missing or not valid JSON"):
        estimate(broken)
