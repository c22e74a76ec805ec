"""A prompt file for ``turbo-edge eval --prompts FILE``: one prompt per line; blank lines and lines starting with
``#`` are skipped. Torch-free, so the config can tell a file from a split name without loading anything."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from turbo_edge.spec.inputs import MAX_PROMPT_CHARS, shown


def is_prompt_file(value: str, splits: tuple[str, ...]) -> bool:
    """A split name stays a split; anything that is a file, or looks like a path (a separator, a ``.txt`` suffix), is
    read as a prompt file (so a missing ``prompts.txt`` is reported as a missing file, not as an unknown split)."""
    if value in splits:
        return False
    return Path(value).is_file() or "/" in value or os.sep in value or value.lower().endswith(".txt")


def read_prompt_file(path: str | os.PathLike[str]) -> tuple[list[str], str]:
    """The prompts of ``path`` in file order (each stripped) and the file's sha256."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--prompts file {file} not found: give a text file with one prompt per line (or a split: train, val, heldout)")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--prompts file {file} is not UTF-8 text (byte {exc.start}): save it as UTF-8, one prompt per line") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"--prompts file {file} has no prompts (blank lines and # comments are skipped): write one prompt per line")
    long = [p for p in prompts if len(p) > MAX_PROMPT_CHARS]
    if long:
        raise ValueError(f"--prompts file {file} has a line of {len(long[0])} characters ({shown(long[0])}); a prompt is one line of at most {MAX_PROMPT_CHARS}")
    return prompts, hashlib.sha256(data).hexdigest()
