"""The one rule for a path read from a user's file (a bundle's manifest, a video folder's metadata, a CSV's rows, a
prepared dataset's ``index.json``): it names a file inside the file's root, and stays inside once links are followed.

``inside(root, rel)`` returns ``root / rel`` or raises ``OutsideRoot`` whose ``reason`` says which part of the rule
failed; each reader turns that into its own one-line message (``spec.bundle.member``, ``core.sources``,
``core.prepared``). Torch-free, so the runtime and the data layer share it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

# Why a path is refused, in the words the readers' messages use.
REASONS = {
    "name": "is not a relative file name",
    "outside": "points outside",
    "link": "is a link to a file outside",
    "loop": "is a symlink loop",
}


class OutsideRoot(ValueError):
    """A path from a user's file that is not a file name inside its root; ``reason`` is a key of ``REASONS``."""

    def __init__(self, rel: Any, root: Path, reason: str) -> None:
        super().__init__(f"{rel!r} {REASONS[reason]} {root}")
        self.rel, self.root, self.reason = rel, root, reason


def inside(root: str | Path, rel: Any) -> Path:
    """``root / rel`` for a relative name that resolves (links followed) inside ``root``; ``OutsideRoot`` otherwise.

    Refused: non-strings, empty names, NUL bytes, absolute paths (POSIX or the platform's), ``..`` parts, backslashes
    and names whose resolved target (a link, or a link in a parent folder) lies outside ``root``.
    """
    root = Path(root)
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise OutsideRoot(rel, root, "name")
    posix = PurePosixPath(rel)
    if posix.is_absolute() or Path(rel).is_absolute() or ".." in posix.parts or "\\" in rel:
        raise OutsideRoot(rel, root, "outside")
    path = root / rel
    try:
        ok = path.resolve().is_relative_to(root.resolve())
    except RuntimeError:  # Python 3.11's resolve() on a link cycle
        raise OutsideRoot(rel, root, "loop") from None
    except OSError:
        ok = False
    if not ok:
        raise OutsideRoot(rel, root, "link")
    return path
