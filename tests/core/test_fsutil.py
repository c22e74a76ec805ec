"""staged_dir: a directory artifact replaces the old one whole, or not at all."""

from __future__ import annotations

import pytest

from turbo_edge.core.fsutil import staged_dir


def test_staged_dir_replaces_on_success(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "manifest.json").write_text("{}")  # an artifact of the kind being written: it may be replaced
    with staged_dir(out, "manifest.json") as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp or .old dir left beside it


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staged_dir_keeps_old_on_failure(tmp_path, exc):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "manifest.json").write_text("{}")
    with pytest.raises(exc):
        with staged_dir(out, "manifest.json") as tmp:
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


@pytest.mark.parametrize("kind", ["user_dir", "user_file"])
def test_staged_dir_never_replaces_what_turbo_edge_did_not_write(tmp_path, kind):
    out = tmp_path / "d"
    if kind == "user_dir":
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
    else:
        out.write_text("years of work")
    with pytest.raises(FileExistsError, match="did not write|existing file"):
        with staged_dir(out, "model_index.json"):
            raise AssertionError("must refuse before any work")
    assert (out / "thesis.txt" if kind == "user_dir" else out).read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp or hidden .old left


def test_convert_onto_a_user_directory_is_refused_and_loses_nothing(tmp_path, capsys):
    from turbo_edge import cli

    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("x")
    assert cli.main(["convert", "--model", "builtin", "--out", str(out)]) == 2
    assert "did not write" in capsys.readouterr().err and (out / "thesis.txt").read_text() == "x"
