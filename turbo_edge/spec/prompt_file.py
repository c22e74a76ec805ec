"""A prompt file for ``--prompts FILE`` (eval, generate, export): one prompt per line; blank lines and lines starting with
``#`` are skipped. Torch-free, so the config can tell a file from a split name without loading anything."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from turbo_edge.spec.inputs import MAX_PROMPT_CHARS, check_prompt_text, shown

MAX_PROMPT_FILE_BYTES = 16 * 2**20  # a prompt list, not a corpus: a bigger file is a wrong path


def is_prompt_file(value: str, splits: tuple[str, ...]) -> bool:
    """A split name stays a split; anything that is a file, or looks like a path (a separator, a ``.txt`` suffix), is
    read as a prompt file (so a missing ``prompts.txt`` is reported as a missing file, not as an unknown split)."""
    if value in splits:
        return False
    return Path(value).is_file() or "/" in value or os.sep in value or value.lower().endswith(".txt")


def read_prompt_file(path: str | os.PathLike[str]) -> tuple[list[str], str]:
    """The prompts of ``path`` in file order (each stripped, each through ``check_prompt_text``) and the file's sha256.
    Every stage's ``--prompts FILE`` reads this way (eval, generate, export's calibration)."""
    lines, digest = read_prompt_lines(path)
    return [prompt for _, prompt in lines], digest


def read_prompt_lines(path: str | os.PathLike[str]) -> tuple[list[tuple[int, str]], str]:
    """``read_prompt_file`` with each prompt's line number in the file (1-based), so a later refusal names the line."""
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"--prompts {file} is a folder; give a text file with one prompt per line")
    if not file.is_file():
        raise FileNotFoundError(f"--prompts file {file} not found: give a text file with one prompt per line")
    if file.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise ValueError(f"--prompts file {file} is over {MAX_PROMPT_FILE_BYTES >> 20} MiB: a prompt file holds one prompt per line")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--prompts file {file} is not UTF-8 text (byte {exc.start}): save it as UTF-8, one prompt per line") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"--prompts file {file}, line {number}: {len(prompt)} characters ({shown(prompt)}); a prompt is one line of at most {MAX_PROMPT_CHARS}")
        try:
            prompts.append((number, check_prompt_text(prompt)))
        except ValueError as exc:
            raise ValueError(f"--prompts file {file}, line {number}: {exc}") from None
    if not prompts:
        raise ValueError(f"--prompts file {file} has no prompts (blank lines and # comments are skipped): write one prompt per line")
    return prompts, hashlib.sha256(data).hexdigest()
