"""``spec.prompt_file.read_prompt_file`` (``--prompts FILE`` of generate, export and eval): one prompt per line, comments and blank lines
skipped, one-line errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbo_edge.spec.configs import GenerateConfig
from turbo_edge.spec.prompt_file import read_prompt_file


def test_reads_prompts_in_order_skipping_blanks_and_comments(tmp_path: Path):
    file = tmp_path / "prompts.txt"
    file.write_bytes("\ufeff# the world's prompts\n  a red circle moving left  \n\n\t# indented comment\r\na blue square staying still\r\n   \n"
                     "a green #2 triangle moving up".encode())
    assert read_prompt_file(file)[0] == ["a red circle moving left", "a blue square staying still", "a green #2 triangle moving up"]


@pytest.mark.parametrize("content,message", [
    ("", "has no prompts (blank lines and # comments are skipped)"),
    ("# only a comment\n\n   \n", "has no prompts"),
    ("a red circle\nbad\x00prompt\n", "line 2: prompt contains a NUL character"),
    ("ok\n" + "a " * 1500 + "\n", "line 2: 2999 characters"),
])
def test_refuses_with_one_line_naming_the_file(tmp_path: Path, content: str, message: str):
    file = tmp_path / "p.txt"
    file.write_text(content)
    with pytest.raises(ValueError) as info:
        read_prompt_file(file)
    assert message in str(info.value) and str(file) in str(info.value) and "\n" not in str(info.value)


def test_refuses_a_missing_or_binary_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not found: give a text file with one prompt per line"):
        read_prompt_file(tmp_path / "absent.txt")
    (tmp_path / "bin").write_bytes(b"a red circle\n\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 13\)"):
        read_prompt_file(tmp_path / "bin")


@pytest.mark.parametrize("kw,message", [
    ({"prompt": "a red circle moving left", "prompts": "p.txt", "out": "clips"}, "not both"),
    ({"prompts": "p.txt"}, "with --prompts, --out is a directory"),
    ({"prompts": "p.txt", "out": "clips", "clip_format": "avi"}, "--clip-format must be one of"),
    ({"prompt": "a red circle moving left", "out": "clips"}, "--out must end in .gif or .mp4"),
])
def test_generate_config_checks_prompts_and_out(kw, message):
    with pytest.raises(ValueError, match=message):
        GenerateConfig.make(**kw)
    assert GenerateConfig.make(prompts="p.txt", out="clips").prompt == ""
