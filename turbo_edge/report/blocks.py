"""The report's building blocks: the section / table / clip-grid model, value formatting and results-file reading.

Shared by the section builders (``builders``), the Markdown writer (``render``) and the HTML page (``html_page``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

from turbo_edge.report.plots import Plot

Scalar = str | int | float | bool | None


class ReportError(ValueError):
    """A results or clips file the report cannot read; the message names the file."""


@dataclasses.dataclass
class Table:
    columns: list[str]
    cells: list[list[str]]
    numeric: list[bool]  # per column: right-aligned
    caption: str = ""


@dataclasses.dataclass
class ClipGrid:
    prompts: list[str]
    rows: list[str]
    paths: dict[tuple[str, str], str | None]  # (row, prompt) -> path relative to the report directory, None if missing


Block = Table | Plot | ClipGrid | str


@dataclasses.dataclass
class Section:
    title: str
    source: str | None  # the results file it comes from
    command: str | None
    blocks: list[Block]


# ------------------------------------------------------------------ values and tables


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def format_value(value: Any) -> str:
    """Round for reading: four significant digits, whole numbers from 1000 up, scientific notation below 0.001."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        magnitude = abs(value)
        if not math.isfinite(value) or magnitude == 0:
            return str(value) if value else "0"
        if magnitude >= 1000:
            return f"{value:.0f}"
        return f"{value:.4g}" if magnitude >= 1e-3 else f"{value:.3g}"
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table_from_dicts(rows: list[dict[str, Any]], columns: list[str] | None = None, labels: dict[str, str] | None = None,
                     caption: str = "") -> Table:
    """One table row per dict; ``columns`` first (those present), then every other key in order of appearance."""
    keys: list[str] = [c for c in (columns or []) if any(c in r for r in rows)]
    for row in rows:
        keys += [k for k in row if k not in keys]
    numeric = [all(isinstance(r.get(k), int | float) and not isinstance(r.get(k), bool) for r in rows if r.get(k) is not None)
               and any(r.get(k) is not None for r in rows) for k in keys]
    cells = [[format_value(row[k]) if k in row else "" for k in keys] for row in rows]
    return Table([(labels or {}).get(k, k) for k in keys], cells, numeric, caption)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists of scalars stay (formatted as one cell), lists of dicts are dropped."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        elif _is_scalar(value) or (isinstance(value, list) and all(_is_scalar(v) for v in value)):
            flat[name] = value
    return flat


def key_figures(data: dict[str, Any], caption: str = "") -> Table:
    return table_from_dicts([{"figure": k, "value": v} for k, v in data.items()], caption=caption)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _intro(sources: list[str], skipped: list[str]) -> str:
    text = "Every figure below is read from " + (", ".join(f"`{s}`" for s in sources) or "no results file") + "."
    if skipped:
        text += " Not results files (no `command`), skipped: " + ", ".join(f"`{s}`" for s in skipped) + "."
    return text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data
