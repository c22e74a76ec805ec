"""Directory artifacts land whole or not at all, and never over something turbo-edge did not write.

``staged_dir(out, marker)`` replaces an existing ``out`` only if it is an empty directory or an artifact of the
same kind (it holds ``marker``: ``model_index.json`` for a model directory, ``manifest.json`` for a bundle). Any
other directory, and any file, is refused before work starts, so ``--out`` can never delete a user's files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def replace_dir(tmp: Path, out: Path) -> None:
    """Swap a finished temp dir (a sibling of ``out``) into place; the old ``out`` goes only once the new one is there."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def check_replaceable(out: Path, marker: str) -> None:
    """Raise ``FileExistsError`` unless ``out`` is absent, an empty directory or a turbo-edge artifact holding ``marker``."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"--out {out} is an existing file; turbo-edge writes a directory there only where nothing is: choose another --out")
    if any(out.iterdir()) and not (out / marker).is_file():
        raise FileExistsError(f"--out {out} is a directory turbo-edge did not write (it has no {marker}); "
                              "choose a new --out, or empty it yourself: turbo-edge replaces only its own artifacts")


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike[str], marker: str) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``out``; on a clean exit it replaces ``out``, on any exception (Ctrl-C included)
    it is deleted and ``out`` is left as it was. ``out`` must be replaceable (``check_replaceable``)."""
    out = Path(out)
    check_replaceable(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp_", dir=out.parent))
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
