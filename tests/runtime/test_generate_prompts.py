"""``generate --prompts FILE``: one clip per prompt into the --out directory, each what a single call writes, listed in
clips.json; the directory is replaced only with --overwrite and only when generate wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from turbo_edge import cli

PROMPTS = ["a red circle moving left", "a blue square staying still", "a green triangle moving up"]


def _prompt_file(tmp_path: Path) -> Path:
    file = tmp_path / "prompts.txt"
    file.write_text("# three world prompts\n" + "\n\n".join(PROMPTS) + "\n")
    return file


def test_bundle_clips_equal_single_calls_and_are_listed(synthetic_student_bundle: Path, tmp_path: Path, capsys):
    file, out = _prompt_file(tmp_path), tmp_path / "clips"
    args = ["--bundle", str(synthetic_student_bundle), "--steps", "2", "--seed", "4"]
    assert cli.main(["generate", "--prompts", str(file), "--out", str(out), *args]) == 0
    assert "wrote 3 clips to" in capsys.readouterr().out
    index = json.loads((out / "clips.json").read_text())
    assert [c["prompt"] for c in index["clips"]] == PROMPTS and [c["file"] for c in index["clips"]] == ["000.gif", "001.gif", "002.gif"]
    assert index["seed"] == 4 and index["steps"] == 2
    for i, prompt in enumerate(PROMPTS):
        single = tmp_path / f"single{i}.gif"
        assert cli.main(["generate", prompt, "--out", str(single), *args]) == 0
        assert (out / f"{i:03d}.gif").read_bytes() == single.read_bytes()
    before = (out / "000.gif").read_bytes()
    assert cli.main(["generate", "--prompts", str(file), "--out", str(out), *args, "--seed", "5"]) == 2  # exists: refused
    assert "--overwrite" in capsys.readouterr().err and (out / "000.gif").read_bytes() == before
    assert cli.main(["generate", "--prompts", str(file), "--out", str(out), *args, "--seed", "5", "--overwrite", "--clip-format", "mp4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".turbo-edge-output.json", "000.mp4", "001.mp4", "002.mp4", "clips.json"]  # the record: what a later --overwrite may replace


def test_empty_prompt_file_and_foreign_directory_are_refused_before_work(synthetic_student_bundle: Path, tmp_path: Path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    assert cli.main(["generate", "--prompts", str(empty), "--out", str(tmp_path / "clips"), "--bundle", str(synthetic_student_bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("has no prompts (blank lines and # comments are skipped): write one prompt per line") and len(err.splitlines()) == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert cli.main(["generate", "--prompts", str(_prompt_file(tmp_path)), "--out", str(mine), "--overwrite",
                     "--bundle", str(synthetic_student_bundle)]) == 2
    assert "did not write" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"


def test_teacher_clips_equal_single_calls(tiny_t2v_dir: Path, tmp_path: Path, capsys):
    file, out = _prompt_file(tmp_path), tmp_path / "teacher_clips"
    args = ["--model", str(tiny_t2v_dir), "--steps", "2", "--seed", "1"]
    assert cli.main(["generate", "--prompts", str(file), "--out", str(out), *args]) == 0
    assert "wrote 3 clips to" in capsys.readouterr().out
    assert json.loads((out / "clips.json").read_text())["steps"] == 2
    single = tmp_path / "single.gif"
    assert cli.main(["generate", PROMPTS[2], "--out", str(single), *args]) == 0
    assert (out / "002.gif").read_bytes() == single.read_bytes()


def test_a_refused_prompt_is_named_by_its_line_before_any_clip(synthetic_student_bundle: Path, tmp_path: Path, capsys):
    file, out = tmp_path / "p.txt", tmp_path / "clips"
    # the refused prompt is the 2nd prompt but the 5th line of the file: the message names the line, as eval does
    file.write_text("# world prompts\na red circle moving left\n\n# next\na pink elephant dancing\n")
    assert cli.main(["generate", "--prompts", str(file), "--out", str(out), "--bundle", str(synthetic_student_bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--prompts file {file}, line 5 ('a pink elephant dancing'): " in err and "'elephant'" in err
    assert not out.exists()  # refused before the first clip, so nothing was staged or written
