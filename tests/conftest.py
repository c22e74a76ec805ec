"""Shared fixtures: tiny randomly initialised models in diffusers layout, built once per session.

Torch is imported only inside the fixtures, so the torch-free runtime's tests run where torch is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_t2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the tiny models need torch (this run blocks it: pytest -p no_torch)")
    from tiny_models import SMALL_SPEC, build_random_t2v

    from turbo_edge.core import world
    from turbo_edge.spec.card import ModelCard

    out = tmp_path_factory.mktemp("models") / "tiny_t2v"
    card = ModelCard(kind="teacher", frames=SMALL_SPEC.frames, closed_vocabulary=world.vocabulary(), default_guidance=2.0)
    return build_random_t2v(out, SMALL_SPEC, card=card)


@pytest.fixture(scope="session")
def open_vocab_t2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like a real checkpoint: no turbo_edge.json, so no closed vocabulary and no turbo-edge metadata."""
    pytest.importorskip("torch", reason="the tiny models need torch (this run blocks it: pytest -p no_torch)")
    from tiny_models import SMALL_SPEC, build_random_t2v

    out = tmp_path_factory.mktemp("models") / "open_t2v"
    return build_random_t2v(out, SMALL_SPEC, card=None, seed=1)


@pytest.fixture(scope="session")
def tiny_student_dir(tiny_t2v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student distilled from the tiny teacher for one step: its layout, LoRA merge and sampler contract are
    real, its weights barely moved (pruning, export and runtime tests build on it)."""
    from turbo_edge.distill.train import train
    from turbo_edge.spec.configs import DistillConfig

    out = tmp_path_factory.mktemp("students") / "distill"
    return train(DistillConfig.make(teacher=str(tiny_t2v_dir), out=str(out), steps=1, batch=2, dataset_clips=8, lora_rank=4, w_embedding_dim=8))




@pytest.fixture(scope="session")
def ir_student_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin student exported with its int8 UNet as OpenVINO IR (``--set int8_format=openvino``, forced: "auto"
    keeps a UNet this small on Q/DQ), through the CLI as a user runs it; fp32 beside it."""
    pytest.importorskip("torch", reason="exporting needs torch (this run blocks it: pytest -p no_torch)")
    from turbo_edge.cli import main

    out = tmp_path_factory.mktemp("ir_bundles") / "student_ir"
    fast = {"int8_calibration_prompts": 2, "int8_subset_size": 8, "int8_bias_correction": "false",
            "int8_scope": "all", "openvino_check": "false"}  # int8_scope not "auto": the same graph on every host
    sets = [a for k, v in fast.items() for a in ("--set", f"{k}={v}")]
    rc = main(["export", "--model", "builtin-student", "--out", str(out), "--precision", "fp32,int8", "--set", "int8_format=openvino", *sets])
    assert rc in (0, None)
    return out


@pytest.fixture(scope="session")
def wan_test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WanPipeline directory with diffusers' own Wan test components (a configuration turbo-edge did not choose)."""
    pytest.importorskip("torch", reason="the tiny models need torch (this run blocks it: pytest -p no_torch)")
    from tiny_models import build_wan_test_pipeline

    return build_wan_test_pipeline(tmp_path_factory.mktemp("models") / "wan_test")


@pytest.fixture(scope="session")
def wan_tiny_dir(wan_test_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Wan test model with a tiny decoder beside its VAE (``TinyDecoder.for_autoencoder_wan``, width 16, random
    weights: export and the runtimes are tested on what it computes, not on how well), saved and named in its card
    as `turbo-edge decoder train` writes them."""
    from tiny_models import add_tiny_decoder

    return add_tiny_decoder(wan_test_dir, tmp_path_factory.mktemp("models") / "wan_tiny", family="wan")


@pytest.fixture(scope="session")
def wan_data_dir(wan_test_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DATA for the Wan test model: 8 world clips rendered with one lead-in frame (9 frames, as a causal VAE takes
    them), written as mp4 (world export) and prepared at 9 x 32 x 32 (data prepare)."""
    from turbo_edge.core.dataset import prepare
    from turbo_edge.core.world_export import export_world
    from turbo_edge.spec.configs.data import DataPrepareConfig, WorldExportConfig

    work = tmp_path_factory.mktemp("wan_data")
    export_world(WorldExportConfig(split="train", num=8, seed=0, out=str(work / "world"), lead_in=1))
    prepare(DataPrepareConfig(source=str(work / "world"), model=str(wan_test_dir), out=str(work / "data"), frames=9, height=32, width=32))
    return work / "data"
