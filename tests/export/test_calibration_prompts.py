"""export's int8 calibration prompts from ``--prompts FILE`` or ``--data DATA`` (its captions), resolved into
``int8_calibration_prompt_list``: recorded in the config and its hash, checked against the model's vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbo_edge import cli
from turbo_edge.core import world
from turbo_edge.export import calibration_prompts, quantize
from turbo_edge.spec.configs import ExportConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib")
    assert cli.main(["world", "export", "--num", "6", "--out", str(root / "videos"), "--seed", "2"]) == 0
    assert cli.main(["data", "prepare", "--source", str(root / "videos"), "--model", "builtin", "--out", str(root / "data"), "--shard-size", "3"]) == 0
    return root / "data"


def test_prompt_file_becomes_the_recorded_list_and_changes_the_hash(tmp_path: Path):
    file = tmp_path / "calib.txt"
    file.write_text("# calibration\na red circle moving left\n\na white square staying still\n")
    base = ExportConfig(model="builtin", precisions=("fp32", "int8"))
    cfg = calibration_prompts.resolve(base.replace(prompts=str(file)))
    assert cfg.int8_calibration_prompt_list == ("a red circle moving left", "a white square staying still")
    assert cfg.to_dict()["int8_calibration_prompt_list"] == ["a red circle moving left", "a white square staying still"]
    assert cfg.content_hash() != base.content_hash() and base.replace(prompts=str(file)).content_hash() == base.content_hash()
    assert calibration_prompts.resolve(base) is base  # neither flag: the world's prompts, nothing recorded
    # int8 calibration runs on the recorded list; without one, on the world's training prompts.
    assert quantize._prompts(cfg) == ["a red circle moving left", "a white square staying still"]
    assert quantize._prompts(base) == [a.prompt for a in world.prompt_set("train", base.int8_calibration_prompts, seed=base.seed)]


def test_data_captions_are_spread_distinct_and_capped(data: Path):
    cfg = calibration_prompts.resolve(ExportConfig(model="builtin", precisions=("fp32",), data=str(data), int8_calibration_prompts=3))
    every = [world.sample("train", 2, i)[0].prompt for i in range(6)]
    assert len(cfg.int8_calibration_prompt_list) == min(3, len(set(every)))
    assert set(cfg.int8_calibration_prompt_list) <= set(every) and len(set(cfg.int8_calibration_prompt_list)) == len(cfg.int8_calibration_prompt_list)


def test_refuses_both_sources_and_words_the_model_never_saw(tmp_path: Path):
    with pytest.raises(ValueError, match="not both"):
        ExportConfig(prompts="a.txt", data="d")
    file = tmp_path / "bad.txt"
    file.write_text("a red circle moving left\na purple dragon flying\n")
    with pytest.raises(ValueError, match=r"'a purple dragon flying' .* never trained on: 'dragon', 'flying'"):
        calibration_prompts.resolve(ExportConfig(model="builtin", prompts=str(file)))
