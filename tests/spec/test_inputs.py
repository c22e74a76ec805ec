"""One table of generation input rules (spec.inputs), applied by the CLI config and the runtime's Python API."""

from __future__ import annotations

import math

import pytest

from turbo_edge import cli
from turbo_edge.spec import inputs
from turbo_edge.spec.configs import GenerateConfig

PROMPT = "a red circle moving left"


@pytest.mark.parametrize("field,value,message", [
    ("guidance", math.nan, "guidance must be a finite number"),
    ("guidance", math.inf, "guidance must be a finite number"),
    ("guidance", -5.0, "guidance must be in [0, 100]"),
    ("guidance", 1e30, "guidance must be in [0, 100]"),
    ("seed", 1.5, "seed must be an integer in [0, 2**63)"),
    ("seed", -1, "seed must be an integer in [0, 2**63)"),
    ("seed", 2**63, "seed must be an integer in [0, 2**63)"),
    ("threads", 1000, "threads must be an integer in [1, "),
    ("threads", 0, "threads must be an integer in [1, "),
    ("scale", 100000, "scale must be an integer in [1, 16]"),
    ("prompt", "a red\x00 circle", "NUL character"),
    ("prompt", "a " * 5000, "over the limit of 2000"),
])
def test_generate_config_refuses_with_one_clear_line(field, value, message):
    with pytest.raises(ValueError) as info:
        GenerateConfig.make(**{"prompt": PROMPT, field: value})
    text = str(info.value)
    assert message in text and len(text) < 200 and "\n" not in text


@pytest.mark.parametrize("argv,message", [
    (["--guidance", "nan"], "guidance must be a finite number"),
    (["--guidance", "inf"], "guidance must be a finite number"),
    (["--threads", "1000"], "threads must be an integer"),
    (["--scale", "100000"], "scale must be an integer in [1, 16]"),
    (["--seed", "-1"], "seed must be an integer"),
])
def test_cli_refuses_before_loading_anything(capsys, argv, message):
    assert cli.main(["generate", PROMPT, "--bundle", "/nonexistent", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_values_inside_the_rules_pass():
    assert inputs.check_seed(2**63 - 1) == 2**63 - 1 and inputs.check_guidance(None) is None
    assert inputs.check_guidance(7) == 7.0 and inputs.check_threads(1) == 1 and inputs.check_scale(4, 32, 32) == 4
    with pytest.raises(ValueError, match="pixel limit"):
        inputs.check_scale(16, 512, 512)
