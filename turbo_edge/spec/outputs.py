"""Outputs never destroy what the user did not ask to replace.

Every ``--out`` in turbo-edge goes through this module (torch-free, so the runtime uses it too):

- ``staged_dir(out, marker, overwrite)``: a directory artifact (a bundle holds ``manifest.json``, a model
  directory ``model_index.json``) is built in a temp dir beside ``out`` and swapped in whole. An existing
  ``out`` is replaced only when it is an empty directory, or, with ``overwrite``, an artifact of the same kind
  (it holds ``marker``); any other directory, and any file, is refused before work starts.
- ``staged_file(path, overwrite, magic)``: a file output (a video) is written to a temp file beside ``path`` and
  renamed over it; an existing file is replaced only with ``overwrite`` and only when its first bytes show it is
  the same kind of file (``magic``); a directory at ``path`` is refused.
- ``staged_json(path, overwrite, kind)``: a JSON results file (``bench --json``, ``eval --json``); an existing file is
  replaced only with ``overwrite`` and only when it carries turbo-edge's ownership record (``OWNER_KEY``: a run id
  and the files it wrote, this one among them).
- Ownership of a directory is proven by what turbo-edge recorded writing there, never by a marker's existence: a
  bundle's ``manifest.json`` lists every file (hashed); every other artifact gets ``RECORD`` (a run id and the list
  of files) when it is swapped in. ``--overwrite`` replaces a directory only when every file in it is on that list:
  a user's file put beside an artifact is never deleted (the run is refused, naming it).
- ``claim_run_dir(out, config_name)``: a run directory (distill, prune, teacher train, demo) is resumable; it may
  be absent, empty, or one this stage wrote (it holds ``config_name``).

Temp names carry the host and pid of the process that made them (``.NAME.tmp-HOST-PID-XXXX``), so a later run
removes the leftovers of a killed one (``remove_stale``) and never touches a live run's; a kill between the two
renames of a swap leaves ``.NAME.old-HOST-PID-0``, which a later run puts back when ``NAME`` is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

KINDS = {"manifest.json": "bundle", "model_index.json": "model directory", "world.json": "world export",
         "clips.json": "clip directory (generate --prompts)"}
RECORD = ".turbo-edge-output.json"  # in an artifact directory: the run that wrote it and every file it wrote
OWNER_KEY = "turbo_edge_output"  # in a JSON results file: {"run_id": ..., "kind": ..., "files": [its own name]}
_RECORD_FORMAT = "turbo-edge-output"
_MAX_RECORD_BYTES = 64 << 20  # a marker bigger than this is not one turbo-edge wrote
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


def new_run_id() -> str:
    """A run id for ownership records: time, host, pid and randomness (two runs never share one)."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _files_under(root: Path) -> Iterator[str]:
    """POSIX relative paths of every file and link under ``root`` (links not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            yield (base / name).relative_to(root).as_posix()


def write_record(root: str | os.PathLike[str], kind: str) -> dict[str, object]:
    """Record in ``root/RECORD`` that turbo-edge wrote every file now under ``root`` (a fresh run id, the files)."""
    root = Path(root)
    record = {"format": _RECORD_FORMAT, "kind": kind, "run_id": new_run_id(),
              "files": sorted(f for f in _files_under(root) if f != RECORD)}
    (root / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _read_json(path: Path) -> object:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_RECORD_BYTES:
            return None
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def owned_files(out: Path, marker: str) -> set[str] | None:
    """The files turbo-edge recorded writing in ``out`` (a bundle's manifest ``files``, else ``RECORD``'s list, the
    record and marker included); None when nothing proves turbo-edge wrote it."""
    if marker == "manifest.json":
        manifest = _read_json(out / marker)
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or not files:
            return None
        return {str(f) for f in files} | {marker}
    record = _read_json(out / RECORD)
    if not isinstance(record, dict) or record.get("format") != _RECORD_FORMAT or not isinstance(record.get("run_id"), str) \
            or not isinstance(record.get("files"), list) or marker not in record["files"]:
        return None
    return {str(f) for f in record["files"]} | {RECORD}


def foreign_files(out: Path, owned: set[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` files under ``out`` that are not in ``owned``."""
    found = []
    for rel in _files_under(out):
        if rel not in owned and not _OWNED.match(rel.rsplit("/", 1)[-1]):
            found.append(rel)
            if len(found) == limit:
                break
    return found


def check_replaceable(out: Path, marker: str, overwrite: bool = False, in_run_dir: bool = False) -> None:
    """Raise ``FileExistsError`` unless ``out`` is absent, an empty directory or (with ``overwrite``) a turbo-edge
    artifact holding ``marker`` whose every file turbo-edge recorded writing (``owned_files``). ``in_run_dir``: ``out``
    lies inside a run directory the stage claimed (``claim_run_dir``), so an artifact of this kind that an earlier
    build left there without a record is the run's own (a run resumed across an upgrade); a record, when there is
    one, is still checked file by file."""
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
    owned = owned_files(out, marker)
    if owned is None and in_run_dir:
        return
    if owned is None:
        proof = "a manifest listing its files" if marker == "manifest.json" else f"{RECORD}, a run id and the files it wrote"
        raise FileExistsError(f"--out {out} holds {marker} but no record that turbo-edge wrote it ({proof}); even with --overwrite "
                              "turbo-edge replaces only what it can prove it wrote: delete it yourself, or choose another --out")
    foreign = foreign_files(out, owned)
    if foreign:
        raise FileExistsError(f"--out {out} holds files turbo-edge did not write there ({', '.join(foreign)}); move them out or "
                              "choose another --out: --overwrite replaces only turbo-edge's own files, never a user's")


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a full disk's write() names no file)."""
    if exc.filename or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


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
def staged_dir(out: str | os.PathLike[str], marker: str, overwrite: bool = False, in_run_dir: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``out``; on a clean exit it replaces ``out``, on any exception (Ctrl-C included)
    it is deleted and ``out`` is left as it was. ``out`` must be replaceable (``check_replaceable``)."""
    out = Path(out)
    remove_stale(out)
    check_replaceable(out, marker, overwrite, in_run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out, "tmp"), dir=out.parent))
    try:
        yield tmp
        if marker != "manifest.json":  # a bundle's manifest already lists (and hashes) every file
            write_record(tmp, KINDS.get(marker, marker))
        _swap(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _naming(exc, out) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_file(path: str | os.PathLike[str], overwrite: bool = False, magic: tuple[tuple[int, bytes], ...] = (),
                      owned: Callable[[Path], bool] | None = None, what: str = "--out") -> None:
    """Raise ``FileExistsError`` unless ``path`` is free, or (with ``overwrite``) a file of the kind ``magic`` names
    (``(offset, bytes)`` pairs, any of which marks the kind) or that ``owned`` accepts as turbo-edge's; ``OSError``
    naming the folder when it cannot be written (checked before the work, not after it)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if path.is_dir():
            raise FileExistsError(f"{what} {path} is a directory; name a file, e.g. {path / ('clip' + (path.suffix or '.gif'))}")
        if not overwrite:
            raise FileExistsError(f"{what} {path} exists; pass --overwrite to replace it, or choose another {what}")
        if path.is_symlink() or not path.is_file():
            raise FileExistsError(f"{what} {path} is not a regular file; turbo-edge replaces only files it wrote: choose another {what}")
        if magic:
            with open(path, "rb") as fh:
                head = fh.read(max(o + len(b) for o, b in magic))
            if not any(head[o:o + len(b)] == b for o, b in magic):
                raise FileExistsError(f"{what} {path} is not a {path.suffix.lstrip('.').upper()} file, so turbo-edge did not write it; "
                                      f"even with --overwrite it replaces only its own outputs: choose another {what}")
        if owned is not None and not owned(path):
            raise FileExistsError(f"{what} {path} is not a file turbo-edge wrote (it carries no {OWNER_KEY} record); even with "
                                  f"--overwrite turbo-edge replaces only its own outputs: choose another {what}")
    check_writable(path.parent, what)


def check_writable(folder: Path, what: str = "--out") -> None:
    """``OSError`` (one line naming the folder) unless ``folder`` exists or can be made, and can be written."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise FileExistsError(f"{what}: {probe} is a file, so {folder} cannot be made; choose another {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write in {probe} (read-only or not yours); choose another {what}")


@contextlib.contextmanager
def staged_file(path: str | os.PathLike[str], overwrite: bool = False, magic: tuple[tuple[int, bytes], ...] = (),
                owned: Callable[[Path], bool] | None = None, what: str = "--out") -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix); on a clean exit it is renamed over ``path``, on any exception
    it is deleted and ``path`` is left as it was."""
    path = Path(path)
    remove_stale(path)
    check_output_file(path, overwrite, magic, owned, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_prefix(path, "tmp"), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def owned_json(path: Path) -> bool:
    """Whether ``path`` is a JSON results file turbo-edge wrote: its ``OWNER_KEY`` record has a run id and lists it."""
    data = _read_json(path)
    record = data.get(OWNER_KEY) if isinstance(data, dict) else None
    return isinstance(record, dict) and isinstance(record.get("run_id"), str) and record.get("files") == [path.name]


def check_json_output(path: str | os.PathLike[str], overwrite: bool = False, what: str = "--json") -> None:
    """Before the work: refuse a ``--json`` path that would lose a file (``staged_json``'s rule)."""
    remove_stale(Path(path))
    check_output_file(path, overwrite, owned=owned_json, what=what)


def write_json_output(path: str | os.PathLike[str], record: dict[str, object], kind: str, overwrite: bool = False,
                      what: str = "--json") -> dict[str, object]:
    """Write ``record`` as JSON to ``path`` with turbo-edge's ownership record; refuse to replace a file it did not
    write (``check_json_output``). Returns what was written."""
    path = Path(path)
    data = {**record, OWNER_KEY: {"run_id": new_run_id(), "kind": kind, "files": [path.name]}}
    with staged_file(path, overwrite, owned=owned_json, what=what) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.chmod(0o644)
    return data


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
