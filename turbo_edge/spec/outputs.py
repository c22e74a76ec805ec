"""Outputs never destroy what the user did not ask to replace.

Every ``--out`` in turbo-edge goes through this module (torch-free, so the runtime uses it too):

- ``staged_dir(out, marker, overwrite)``: a directory artifact (a bundle holds ``manifest.json``, a model
  directory ``model_index.json``) is built in a temp dir beside ``out`` and swapped in whole. An existing
  ``out`` is replaced only when it is an empty directory, or, with ``overwrite``, an artifact of the same kind
  (it holds ``marker``); any other directory, and any file, is refused before work starts.
- ``staged_file(path, overwrite, magic)``: a file output (a video) is written to a temp file beside ``path`` and
  renamed over it; an existing file is replaced only with ``overwrite`` and only when its first bytes show it is
  the same kind of file (``magic``); a directory at ``path`` is refused.
- ``claim_run_dir(out, config_name)``: a run directory (distill, prune, teacher train, demo) is resumable; it may
  be absent, empty, or one this stage wrote (it holds ``config_name``).

Temp names carry the host and pid of the process that made them (``.NAME.tmp-HOST-PID-XXXX``), so a later run
removes the leftovers of a killed one (``remove_stale``) and never touches a live run's; a kill between the two
renames of a swap leaves ``.NAME.old-HOST-PID-0``, which a later run puts back when ``NAME`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

KINDS = {"manifest.json": "bundle", "model_index.json": "model directory", "world.json": "world export",
         "clips.json": "clip directory (generate --prompts)"}
_OWNED = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-(?P<rand>[a-z0-9_]+)(?P<suffix>\.[A-Za-z0-9]+)?$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _prefix(out: Path, what: str) -> str:
    return f".{out.name}.{what}-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp leftovers of killed turbo-edge runs writing ``out`` on this host; restore ``out`` from a
    leftover ``.old`` when a kill fell between the two renames of a swap. Returns what was removed."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for entry in sorted(out.parent.iterdir()):
        m = _OWNED.match(entry.name)
        if not m or m["name"] != out.name or m["host"] != _host():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        if m["what"] == "old" and not out.exists() and not out.is_symlink():
            os.replace(entry, out)  # the swap was cut between its renames: the old artifact is the complete one
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def check_replaceable(out: Path, marker: str, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` unless ``out`` is absent, an empty directory or (with ``overwrite``) a turbo-edge
    artifact holding ``marker``."""
    kind = KINDS.get(marker, f"directory with {marker}")
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"--out {out} is an existing file; turbo-edge writes a {kind} there only where nothing is: choose another --out")
    if not any(out.iterdir()):
        return
    if not (out / marker).is_file():
        raise FileExistsError(f"--out {out} is a directory turbo-edge did not write (it has no {marker}); "
                              "choose a new --out, or empty it yourself: turbo-edge replaces only its own artifacts")
    if not overwrite:
        raise FileExistsError(f"--out {out} already holds a {kind}; pass --overwrite to replace it "
                              "(the old one stays until the new one is complete), or choose another --out")


def _swap(tmp: Path, out: Path) -> None:
    """Put a finished temp dir (a sibling of ``out``) in place; the old ``out`` goes only once the new one is there."""
    if out.exists():
        old = out.with_name(_prefix(out, "old") + "0")
        _remove(old)
        os.replace(out, old)
        os.replace(tmp, out)
        _remove(old)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike[str], marker: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``out``; on a clean exit it replaces ``out``, on any exception (Ctrl-C included)
    it is deleted and ``out`` is left as it was. ``out`` must be replaceable (``check_replaceable``)."""
    out = Path(out)
    remove_stale(out)
    check_replaceable(out, marker, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out, "tmp"), dir=out.parent))
    try:
        yield tmp
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_file(path: str | os.PathLike[str], overwrite: bool = False, magic: tuple[tuple[int, bytes], ...] = ()) -> None:
    """Raise ``FileExistsError`` unless ``path`` is free, or (with ``overwrite``) a file of the kind ``magic`` names
    (``(offset, bytes)`` pairs, any of which marks the kind)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise FileExistsError(f"--out {path} is a directory; name a file, e.g. {path / ('clip' + (path.suffix or '.gif'))}")
    if not overwrite:
        raise FileExistsError(f"--out {path} exists; pass --overwrite to replace it, or choose another --out")
    if path.is_symlink() or not path.is_file():
        raise FileExistsError(f"--out {path} is not a regular file; turbo-edge replaces only files it wrote: choose another --out")
    if magic:
        with open(path, "rb") as fh:
            head = fh.read(max(o + len(b) for o, b in magic))
        if not any(head[o:o + len(b)] == b for o, b in magic):
            raise FileExistsError(f"--out {path} is not a {path.suffix.lstrip('.').upper()} file, so turbo-edge did not write it; "
                                  "even with --overwrite it replaces only its own outputs: choose another --out")


@contextlib.contextmanager
def staged_file(path: str | os.PathLike[str], overwrite: bool = False, magic: tuple[tuple[int, bytes], ...] = ()) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix); on a clean exit it is renamed over ``path``, on any exception
    it is deleted and ``path`` is left as it was."""
    path = Path(path)
    remove_stale(path)
    check_output_file(path, overwrite, magic)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_prefix(path, "tmp"), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


LOCK = ".turbo-edge.lock"  # inside a run directory: held (flock) by the run writing it


def claim_run_dir(out: str | os.PathLike[str], config_name: str) -> Path:
    """Create or reuse the run directory ``out`` (resumable); refuse a non-empty one this stage did not write."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise FileExistsError(f"--out {out} is an existing file; a run needs a directory: choose another --out")
        if any(p.name != LOCK for p in out.iterdir()) and not (out / config_name).is_file():
            raise FileExistsError(f"--out {out} is a directory this stage did not write (it has no {config_name}); "
                                  "choose a new --out: a run resumes only in its own directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def run_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on run directory ``out`` while a run writes it; a second run into the same ``out`` is
    refused at once (``FileExistsError`` naming the holder) instead of interleaving its files with the live one's.
    The lock is the kernel's (``flock``), so a killed run's lock goes with its process; the lock file is removed
    when the run ends (a lock taken on a file removed meanwhile is retaken on the new one)."""
    import fcntl

    path = Path(out) / LOCK
    while True:
        fh = open(path, "a+")  # noqa: SIM115  held for the context
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FileExistsError(f"--out {out} is being written by another turbo-edge run ({holder}); wait for it to finish "
                                  "(then re-run to resume or check it), or choose another --out") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the holder removed the file between our open and our lock: lock the current one
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {_host()}\n")
        fh.flush()
        yield Path(out)
    finally:
        path.unlink(missing_ok=True)
        fh.close()
