"""The hostile-input case tables' common shape: each case is ``(class, name, act, verdict)``; ``act(tmp_path)`` does
what a hostile but ordinary user would, and returns what came back; the verdict says what must come back.

Verdicts: ``"refused: TEXT"`` (the act raised one of the errors the CLI prints as one line, and the line holds TEXT),
``"counted: REASON"`` (a data item skipped and counted under REASON), ``"accepted"``, or ``"kept"`` (an output writer
refused and the user's file is byte for byte as it was). ``benchmarks/bench_hostile.py`` runs the tables and tallies
them per class for ``docs/results.md``; pytest ids are ``class/name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

ONE_LINE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, OSError)


class Case(NamedTuple):
    cls: str
    name: str
    act: Callable[..., Any]
    verdict: str


def params(cases: list[Case]) -> list[Any]:
    return [pytest.param(c, id=f"{c.cls}/{c.name}") for c in cases]


def run(case: Case, *args: Any) -> None:
    """Run the case's act and hold what came back (a one-line refusal, a count, a value) against its verdict."""
    try:
        result = case.act(*args)
    except ONE_LINE_ERRORS as exc:
        text = str(exc)
        assert "\n" not in text.strip(), f"not one line: {text!r}"
        result = f"refused: {text}"
    kind, _, text = case.verdict.partition(": ")
    if kind == "refused":
        assert isinstance(result, str) and result.startswith("refused: ") and text in result, \
            f"expected a refusal holding {text!r}, got {result!r}"
    elif kind == "counted":
        assert result == f"counted: {text}", f"expected the item counted as {text!r}, got {result!r}"
    elif kind in ("accepted", "kept"):
        assert result == kind, f"expected {kind}, got {result!r}"
    else:
        raise AssertionError(f"unknown verdict {case.verdict!r}")
