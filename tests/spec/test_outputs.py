"""Outputs never destroy what the user did not ask to replace: staged_dir, staged_file, claim_run_dir, stale temps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from turbo_edge.runtime.video import write_video
from turbo_edge.spec.outputs import _prefix, check_output_file, claim_run_dir, remove_stale, staged_dir, staged_file


def _bundle_dir(path, content="old"):
    path.mkdir()
    (path / "old.txt").write_text(content)
    (path / "manifest.json").write_text('{"files": {"old.txt": "0"}}')  # an artifact of the kind being written, listing its files
    return path


def test_staged_dir_replaces_same_kind_only_with_overwrite(tmp_path):
    out = _bundle_dir(tmp_path / "bundle")
    with pytest.raises(FileExistsError, match="already holds a bundle; pass --overwrite"):
        with staged_dir(out, "manifest.json"):
            raise AssertionError("must refuse before any work")
    assert (out / "old.txt").read_text() == "old"
    with staged_dir(out, "manifest.json", overwrite=True) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp or .old dir left beside it


def test_staged_dir_fills_an_empty_directory_without_overwrite(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with staged_dir(out, "manifest.json") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staged_dir_keeps_old_on_failure(tmp_path, exc):
    out = _bundle_dir(tmp_path / "bundle")
    with pytest.raises(exc):
        with staged_dir(out, "manifest.json", overwrite=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc()
    assert (out / "old.txt").read_text() == "old" and not (out / "half.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_staged_dir_creates_parent_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(ValueError):
        with staged_dir(out, "manifest.json"):
            raise ValueError("boom")
    assert not out.exists() and list((tmp_path / "a").iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", ["user_dir", "user_file", "symlink"])
def test_staged_dir_never_replaces_what_turbo_edge_did_not_write(tmp_path, kind, overwrite):
    out = tmp_path / "d"
    keep = tmp_path / "thesis.txt"
    keep.write_text("years of work")
    if kind == "user_dir":
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
        keep = out / "thesis.txt"
    elif kind == "user_file":
        out.write_text("years of work")
        keep = out
    else:
        out.symlink_to(keep)
    with pytest.raises(FileExistsError, match="did not write|existing file"):
        with staged_dir(out, "model_index.json", overwrite=overwrite):
            raise AssertionError("must refuse before any work")
    assert keep.read_text() == "years of work"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or hidden .old left


_KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    from turbo_edge.spec.outputs import staged_dir, staged_file
    kind, out = sys.argv[1], sys.argv[2]
    ctx = staged_dir(out, "manifest.json", overwrite=True) if kind == "dir" else staged_file(out, overwrite=True)
    with ctx as tmp:
        if kind == "dir":
            (tmp / "big.bin").write_bytes(b"x" * 100000)
        else:
            tmp.write_bytes(b"GIF89a half")
        print("ready", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_sigkilled_writer_leaves_a_temp_that_the_next_run_removes(tmp_path, kind):
    out = tmp_path / ("bundle" if kind == "dir" else "clip.gif")
    if kind == "dir":
        _bundle_dir(out)
    else:
        out.write_bytes(b"GIF89a old")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, kind, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.tmp-")]
    assert len(leftovers) == 1  # a live run's temp: never touched by another run
    assert remove_stale(out) == []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "old.txt").read_text() == "old" if kind == "dir" else out.read_bytes() == b"GIF89a old"
    assert remove_stale(out) == leftovers  # the killed run's temp goes
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_a_kill_between_the_swap_renames_is_healed_from_the_old_copy(tmp_path):
    out = tmp_path / "bundle"
    old = tmp_path / (_prefix(out, "old").replace(f"-{os.getpid()}-", "-999999999-") + "0")  # a dead pid's .old
    _bundle_dir(old)
    assert not out.exists()
    remove_stale(out)
    assert (out / "old.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_staged_file_needs_overwrite_and_the_same_kind_of_file(tmp_path):
    out = tmp_path / "clip.gif"
    out.write_bytes(b"GIF89a old")
    magic = ((0, b"GIF8"),)
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        check_output_file(out, False, magic)
    with staged_file(out, True, magic) as tmp:
        tmp.write_bytes(b"GIF89a new")
    assert out.read_bytes() == b"GIF89a new"
    thesis = tmp_path / "thesis.gif"
    thesis.write_text("years of work, misnamed")
    with pytest.raises(FileExistsError, match="is not a GIF file"):
        check_output_file(thesis, True, magic)
    with pytest.raises(FileExistsError, match="is a directory"):
        check_output_file(tmp_path, True, magic)
    assert thesis.read_text() == "years of work, misnamed"


def test_write_video_refuses_to_overwrite_and_replaces_its_own_kind(tmp_path):
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    out = write_video(frames, tmp_path / "clip.gif", scale=1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_video(frames + 200, out, scale=1)
    write_video(frames + 200, out, scale=1, overwrite=True)
    from PIL import Image

    assert np.asarray(Image.open(out).convert("RGB"))[0, 0, 0] == 200
    mp4 = write_video(frames, tmp_path / "clip.mp4", scale=1)
    write_video(frames, mp4, scale=1, overwrite=True)  # its own MP4 (ftyp box) is replaceable
    with pytest.raises(FileExistsError, match="is not a GIF file"):
        write_video(frames, mp4.rename(tmp_path / "actually_mp4.gif"), scale=1, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actually_mp4.gif", "clip.gif"]


def test_claim_run_dir(tmp_path):
    run = claim_run_dir(tmp_path / "run", "distill_config.json")
    (run / "distill_config.json").write_text("{}")
    assert claim_run_dir(run, "distill_config.json") == run  # resumable
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="did not write"):
        claim_run_dir(user, "distill_config.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="existing file"):
        claim_run_dir(tmp_path / "file", "distill_config.json")


def test_convert_onto_a_user_directory_is_refused_and_loses_nothing(tmp_path, capsys):
    from turbo_edge import cli

    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("x")
    assert cli.main(["convert", "--model", "builtin", "--out", str(out)]) == 2
    assert "did not write" in capsys.readouterr().err and (out / "thesis.txt").read_text() == "x"
    good = tmp_path / "good"
    assert cli.main(["convert", "--model", "builtin", "--out", str(good)]) == 0
    assert cli.main(["convert", "--model", "builtin", "--out", str(good)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert cli.main(["convert", "--model", "builtin", "--out", str(good), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "good"]
