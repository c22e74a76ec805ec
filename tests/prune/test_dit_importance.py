"""VDMini block importance on a Wan transformer (diffusers' Wan test configuration)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from turbo_edge.core.denoiser import WanFamily, call_denoiser
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.prune.dit import measure_importance, simulate_removal


@pytest.fixture(scope="module")
def wan(wan_test_dir: Path):
    return load_teacher(wan_test_dir)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, 3, 4, 4, generator=g), torch.tensor([700.0, 200.0]), torch.randn(2, 5, 32, generator=g)


def test_simulated_removal_is_the_plan_surgery(wan):
    x, t, text = _inputs()
    with simulate_removal(wan.unet, ["blocks.0"]):
        simulated = call_denoiser(wan.unet, x, t, text)
    pruned = WanFamily().apply_plan(copy.deepcopy(wan.unet), {"removed": ["blocks.0"]})
    assert len(pruned.blocks) == 1
    torch.testing.assert_close(call_denoiser(pruned, x, t, text), simulated)
    assert (simulated - call_denoiser(wan.unet, x, t, text)).abs().max() > 1e-4  # the hook is gone after the context


def test_importance_table_has_a_row_per_block(wan):
    latents = torch.randn(2, 16, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    table = measure_importance(wan.unet, latents, wan.encode_prompts(["a red circle moving left", "a cat running"]), [0.9, 0.5])
    assert [r["name"] for r in table["units"]] == ["blocks.0", "blocks.1"]
    for row in table["units"]:
        assert row["content_cost"] > 0 and row["motion_cost"] > 0 and 0 < row["motion_share"] < 1 and row["params"] > 0


def test_a_plan_may_not_name_unknown_blocks_or_remove_all(wan):
    with pytest.raises(ValueError, match="does not have"):
        WanFamily().apply_plan(copy.deepcopy(wan.unet), {"removed": ["blocks.7"]})
    with pytest.raises(ValueError, match="every transformer block"):
        WanFamily().apply_plan(copy.deepcopy(wan.unet), {"removed": ["blocks.0", "blocks.1"]})
