"""staged_dir: a directory artifact replaces the old one whole, or not at all."""

from __future__ import annotations

import pytest

from turbo_edge.core.fsutil import staged_dir


def test_staged_dir_replaces_on_success(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp or .old dir left beside it


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staged_dir_keeps_old_on_failure(tmp_path, exc):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(exc):
        with staged_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc()
    assert (out / "old.txt").read_text() == "old" and not (out / "half.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_staged_dir_creates_parent_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(ValueError):
        with staged_dir(out):
            raise ValueError("boom")
    assert not out.exists() and list((tmp_path / "a").iterdir()) == []
