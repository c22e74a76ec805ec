"""Configs live in spec (torch-free) and the CLI is made from their fields: every flag sets a field, every field
is reachable, and a config recorded by an older build still loads."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from turbo_edge import cli
from turbo_edge.spec.config import leaf_fields, resolve_key
from turbo_edge.spec.configs import DistillConfig, ExportConfig, PruneConfig, TeacherExportConfig, TeacherTrainConfig


def test_configs_and_cli_import_without_heavy_libraries():
    code = ("import sys, turbo_edge.spec.configs, turbo_edge.cli; cli = sys.modules['turbo_edge.cli']; cli.build_parser(); "
            "print([m for m in ('torch', 'diffusers', 'transformers', 'onnx', 'onnxruntime', 'openvino', 'nncf') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """(command name, parser) of every leaf subcommand ("teacher train", "distill", ...)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in groups:
        for name, sub in action.choices.items():
            yield from _subparsers(sub, f"{prefix}{name} ")
    if prefix and not groups:
        yield prefix.strip(), parser


def test_every_flag_sets_a_config_field_and_every_field_is_reachable():
    parsers = dict(_subparsers(cli.build_parser()))
    assert set(parsers) == set(cli.COMMANDS)
    for name, parser in parsers.items():
        cls = cli.COMMANDS[name][0]
        leaves = leaf_fields(cls)
        dests = {a.dest.removeprefix("cfg__") for a in parser._actions if a.dest.startswith("cfg__")}
        assert dests <= set(leaves), (name, dests - set(leaves))
        without_flag = {k for k in set(leaves) - dests if leaves[k][0].metadata.get("cli", True)}
        for key in without_flag:  # fields with no flag (lists, dicts without a parser) are reachable through --set
            assert resolve_key(cls, key) == key


def test_flag_forms(capsys):
    def dry(*argv):
        assert cli.main([*argv, "--dry-run"]) == 0
        return json.loads(capsys.readouterr().out)

    assert dry("teacher", "train", "--freeze-text-encoder", "--min-snr-plus-one")["train_text_encoder"] is False
    assert dry("teacher", "export", "--online")["ema"] is False
    cfg = dry("distill", "--reward", "builtin-image:1.0:2", "--reward", "builtin-video:0.5", "--batch", "4")
    assert cfg["rewards"] == [{"name": "builtin-image", "weight": 1.0, "frames": 2}, {"name": "builtin-video", "weight": 0.5}]
    assert cfg["loop"]["batch"] == 4
    assert dry("export", "--precision", "fp32,int8", "--int8-scope", "conv")["precisions"] == ["fp32", "int8"]
    assert dry("prune", "--set", "loop.steps=9")["loop"]["steps"] == 9

def test_bad_reward_flag_is_one_line(capsys):
    assert cli.main(["distill", "--reward", "builtin-image", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "NAME:WEIGHT[:FRAMES]" in err and err.count("\n") == 1


def test_flat_and_dotted_keys():
    assert resolve_key(DistillConfig, "steps") == "loop.steps" == resolve_key(DistillConfig, "loop.steps")
    with pytest.raises(ValueError, match="not a distill config key"):
        resolve_key(DistillConfig, "stepz")
    cfg = DistillConfig.make(steps=7, w_max=6.0)
    assert cfg.loop.steps == 7 and cfg.replace(lr=0.5).loop.lr == 0.5
    assert cfg.command_line("distill") == "turbo-edge distill --set w_max=6.0 --set steps=7"


def test_version_1_configs_migrate():
    old = {"kind": "prune", "version": 1, "student": "s", "steps": 2000, "batch": 4, "threads": 2, "icd_weight": 0.0}
    cfg = PruneConfig.from_dict(old)
    assert (cfg.loop.steps, cfg.loop.batch, cfg.loop.threads, cfg.icd_weight) == (2000, 4, 2, 0.0)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="version 3 is not supported"):
        PruneConfig.from_dict({**cfg.to_dict(), "version": 3})
    assert TeacherTrainConfig.VERSION == TeacherExportConfig.VERSION == ExportConfig.VERSION == 1
