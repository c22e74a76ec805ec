"""Render the benchmark results (``benchmarks/results/*.json``) as ``report.md``, a static ``index.html`` and PNG plots.

Every figure shown is read from a results file; the report only formats (rounds) numbers, it never computes new
ones. Each results file becomes one section, built by the builder registered for its family (the file's stem, or the
part before the first ``_``: ``runtime_builtin.json`` is a ``runtime`` file); unknown families get a generic section
(command and top-level scalar figures). No torch: this runs wherever the results files are.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from turbo_edge.core.world import MOTIONS
from turbo_edge.report.plots import Plot, plot_bars, plot_latency_quality, plot_stage_latency

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


# ------------------------------------------------------------------ section builders, registered by family

Builder = Callable[[str, dict[str, Any], Path], Section]
BUILDERS: dict[str, Builder] = {}
FAMILY_ORDER = ("demo", "teacher", "distill", "prune", "export", "runtime")


def builder(family: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        BUILDERS[family] = fn
        return fn

    return register


def family_of(stem: str) -> str:
    return stem if stem in BUILDERS else stem.split("_")[0]


def _structured_blocks(data: dict[str, Any], skip: set[str]) -> list[Block]:
    """Generic layout of a results dict: top-level scalars as key figures, flat dicts with the same keys as one
    comparison table (``student`` / ``pruned``), other dicts flattened, lists of dicts as tables."""
    items = {k: v for k, v in data.items() if k not in skip and k != "command"}
    top = {k: v for k, v in items.items() if _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v))}
    blocks: list[Block] = [key_figures(top, "key figures")] if top else []
    flat_dicts = {k: v for k, v in items.items() if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values())}
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for key, value in flat_dicts.items():
        by_keys.setdefault(tuple(value), []).append(key)
    for key, value in items.items():
        if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            blocks.append(table_from_dicts([_flatten(x) for x in value], caption=key))
        elif key in flat_dicts and len(by_keys[tuple(value)]) > 1:
            group = by_keys[tuple(value)]
            if key == group[0]:
                blocks.append(table_from_dicts([{"": k, **flat_dicts[k]} for k in group], caption=" vs ".join(group)))
        elif isinstance(value, dict) and value:
            blocks.append(key_figures(_flatten(value), key))
    return blocks


@builder("prune")
@builder("runtime")
def _structured_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    return Section(Path(name).stem, name, data.get("command"), _structured_blocks(data, set()))


def _generic_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    scalars = {k: v for k, v in data.items() if _is_scalar(v) and k != "command"}
    blocks: list[Block] = [key_figures(scalars, "top-level figures")] if scalars else []
    others = [k for k, v in data.items() if not _is_scalar(v)]
    if others:
        blocks.append("Also in the file, not shown: " + ", ".join(f"`{k}`" for k in others) + ".")
    return Section(Path(name).stem, name, data.get("command"), blocks)


DEMO_COLUMNS = {
    "row": "row", "stage": "stage", "backend": "backend", "precision": "precision", "steps": "steps",
    "latency_ms": "latency (ms, median per video)", "speedup": "speedup vs teacher", "content_acc": "content acc",
    "motion_acc": "motion acc", "fd": "FD", "peak_rss_mb": "peak RSS (MB)",
}
DEMO_NUMBERS = ("steps", "latency_ms", "speedup", "content_acc", "motion_acc", "fd", "peak_rss_mb")
STAGE_COLUMNS = {"row": "row", "text_encoder_ms": "text encoder (ms)", "unet_step_ms": "UNet, one step (ms)", "vae_ms": "VAE decode (ms)"}


def _check_rows(name: str, data: dict[str, Any], key: str, numbers: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = data.get(key, [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ReportError(f"{name}: `{key}` must be a list of objects")
    for i, row in enumerate(rows):
        for field in numbers:
            value = row.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ReportError(f"{name}: {key}[{i}] ({row.get('row', '?')}): `{field}` must be a number or null, got {value!r}")
    return rows


@builder("demo")
def _demo_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    rows = _check_rows(name, data, "rows", DEMO_NUMBERS)
    stages = _check_rows(name, data, "stage_latency", tuple(k for k in STAGE_COLUMNS if k != "row"))
    blocks: list[Block] = []
    if rows:
        main = [{k: r.get(k) for k in DEMO_COLUMNS} for r in rows]
        blocks.append(table_from_dicts(main, list(DEMO_COLUMNS), DEMO_COLUMNS, "side by side (speedup: against the teacher row)"))
        nested = {k for r in rows for k, v in r.items() if not _is_scalar(v)}  # clips, stage_latency_ms: shown elsewhere
        extra = [{"row": r.get("row"), **{k: v for k, v in r.items() if k not in DEMO_COLUMNS and k not in nested}} for r in rows]
        if any(len(e) > 1 for e in extra):
            blocks.append(table_from_dicts(extra, caption="more figures per row"))
        plot = plot_latency_quality(rows, plots_dir / f"{Path(name).stem}_latency_quality.png")
        if plot:
            blocks.append(plot)
    if stages:
        blocks.append(table_from_dicts(stages, list(STAGE_COLUMNS), STAGE_COLUMNS, "latency per stage"))
        blocks.append(plot_stage_latency(stages, dict(list(STAGE_COLUMNS.items())[1:]), plots_dir / f"{Path(name).stem}_stage_latency.png"))
    blocks += _structured_blocks(data, {"rows", "stage_latency"})
    return Section("demo: teacher vs student vs pruned", name, data.get("command"), blocks)


@builder("export")
def _export_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    blocks: list[Block] = []
    latency = _check_rows(name, data, "unet_latency", ("median_ms", "p90_ms", "min_ms"))
    if latency:
        blocks.append(table_from_dicts(latency, ["backend", "precision", "median_ms", "p90_ms", "min_ms"], caption="UNet latency per backend / precision"))
        if all(isinstance(r.get("median_ms"), int | float) for r in latency):
            values = [float(r["median_ms"]) for r in latency]
            blocks.append(plot_bars([f"{r.get('backend')} {r.get('precision')}" for r in latency], values, [format_value(v) for v in values],
                                    plots_dir / f"{Path(name).stem}_unet_latency.png", "UNet latency, median (ms)"))
    if isinstance(data.get("speedups"), dict):
        blocks.append(table_from_dicts([{"ratio": k, "value": v} for k, v in data["speedups"].items()], caption="speedups"))
    for key in ("parity", "parity_openvino"):
        if isinstance(data.get(key), dict):
            blocks.append(table_from_dicts(_parity_rows(data[key]), caption=key))
    blocks += _structured_blocks(data, {"unet_latency", "speedups", "parity", "parity_openvino"})
    return Section("export: UNet latency and parity", name, data.get("command"), blocks)


TEACHER_COLUMNS = {
    "model": "model", "prompts": "prompts", "steps": "steps", "guidance": "guidance", "content_acc": "content acc",
    "colour_acc": "colour acc", "shape_acc": "shape acc", "motion_acc": "motion acc", "direction_acc": "direction acc",
    "consistency": "consistency", "fd": "FD", "seconds_per_video": "s / video",
}
TEACHER_NUMBERS = ("steps", "content_acc", "motion_acc", "direction_acc", "fd", "seconds_per_video")
PROBE_COLUMNS = {
    "t": "t", "snr": "SNR", "mse_true_prompt": "x0 MSE (true prompt)", "gap_direction": "gap: wrong direction",
    "gap_colour": "gap: wrong colour", "gap_uncond": "gap: no text", "direction_acc": "direction read-out acc",
}
# The evaluator's motion classes, in the order of its confusion matrices.
MOTION_LABELS = MOTIONS


def _confusion_table(matrix: Any, caption: str) -> Table | None:
    if not (isinstance(matrix, list) and len(matrix) == len(MOTION_LABELS)
            and all(isinstance(r, list) and len(r) == len(MOTION_LABELS) for r in matrix)):
        return None
    rows = [{"prompt says": label, **{f"read {c}": v for c, v in zip(MOTION_LABELS, r)}} for label, r in zip(MOTION_LABELS, matrix)]
    return table_from_dicts(rows, caption=caption)


@builder("teacher")
def _teacher_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    """Evaluator rows (one per model x prompt split) with their motion confusion matrices, or probe rows (one per t)."""
    rows = data.get("rows", [])
    blocks: list[Block] = []
    title = "teacher: held-out evaluator"
    if rows and isinstance(rows, list) and all(isinstance(r, dict) and "t" in r for r in rows):
        title = "teacher: denoising-loss probe"
        rows = _check_rows(name, data, "rows", tuple(k for k in PROBE_COLUMNS))
        blocks.append(table_from_dicts(rows, list(PROBE_COLUMNS), PROBE_COLUMNS,
                                       "denoising-loss probe: relative x0-loss increase when one prompt attribute is wrong"))
    elif rows:
        rows = _check_rows(name, data, "rows", TEACHER_NUMBERS)
        main = [{k: r.get(k) for k in TEACHER_COLUMNS} for r in rows]
        blocks.append(table_from_dicts(main, list(TEACHER_COLUMNS), TEACHER_COLUMNS, "held-out evaluator, per model and prompt split"))
        for r in rows:
            table = _confusion_table(r.get("motion_confusion"), f"motion confusion: {r.get('model')} on {r.get('prompts')} prompts (rows: prompt, columns: evaluator's reading)")
            if table is not None and r.get("model") not in ("groundtruth", "noise"):
                blocks.append(table)
    blocks += _structured_blocks(data, {"rows"})
    return Section(title, name, data.get("command"), blocks)


def _parity_rows(parity: dict[str, Any]) -> list[dict[str, Any]]:
    """``{module: {precision: {max_abs, mean_rel, ...}}}`` to one row per module and precision (scalars only)."""
    rows = []
    for module, per_precision in parity.items():
        for precision, result in (per_precision or {}).items():
            if isinstance(result, dict):
                rows.append({"module": module, "precision": precision, **{k: v for k, v in result.items() if _is_scalar(v)}})
    return rows


# ------------------------------------------------------------------ clips


def _clip_section(clips_dir: Path, out_dir: Path) -> tuple[Section, list[Path]]:
    index_path = clips_dir / "index.json"
    index = _read_json(index_path)
    prompts, rows = index.get("prompts"), index.get("rows")
    if not isinstance(prompts, list) or not isinstance(rows, dict) or not all(isinstance(v, dict) for v in rows.values()):
        raise ReportError(f"{index_path}: expected {{\"prompts\": [str, ...], \"rows\": {{row: {{prompt: gif path}}}}}}")
    copied: list[Path] = []
    paths: dict[tuple[str, str], str | None] = {}
    for r, (row, by_prompt) in enumerate(rows.items()):
        for p, prompt in enumerate(prompts):
            source = clips_dir / str(by_prompt.get(prompt, ""))
            if prompt not in by_prompt or not source.is_file():
                paths[(row, prompt)] = None
                continue
            target = out_dir / "clips" / f"r{r}-p{p}-{_slug(row)}{source.suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(target)
            paths[(row, prompt)] = f"clips/{target.name}"
    return Section("clips", str(index_path), None, [ClipGrid([str(p) for p in prompts], list(rows), paths)]), copied


# ------------------------------------------------------------------ Markdown and HTML


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _intro(sources: list[str], skipped: list[str]) -> str:
    text = "Every figure below is read from " + (", ".join(f"`{s}`" for s in sources) or "no results file") + "."
    if skipped:
        text += " Not results files (no `command`), skipped: " + ", ".join(f"`{s}`" for s in skipped) + "."
    return text


def _markdown(sections: list[Section], sources: list[str], skipped: list[str]) -> str:
    out = ["# turbo-edge report", "", _intro(sources, skipped)]
    for section in sections:
        out += ["", f"## {section.title}", ""]
        if section.source:
            out.append(f"Source: `{section.source}`" + (f"; command: `{section.command}`" if section.command else ""))
        for block in section.blocks:
            out.append("")
            if isinstance(block, Table):
                if block.caption:
                    out += [f"**{block.caption}**", ""]
                out.append("| " + " | ".join(_md_cell(c) or " " for c in block.columns) + " |")
                out.append("|" + "|".join("---:" if n else "---" for n in block.numeric) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.cells]
            elif isinstance(block, Plot):
                out.append(f"![{block.caption}]({block.path})")
            elif isinstance(block, ClipGrid):
                for prompt in block.prompts:
                    out += [f"**{prompt}**", "", "| " + " | ".join(_md_cell(r) for r in block.rows) + " |",
                            "|" + "|".join("---" for _ in block.rows) + "|"]
                    cells = [f"![{_md_cell(r)}]({block.paths[(r, prompt)]})" if block.paths[(r, prompt)] else "(missing)" for r in block.rows]
                    out += ["| " + " | ".join(cells) + " |", ""]
            else:
                out.append(block)
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: .8em 0 1.4em; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
code { background: #f4f4f4; padding: 0 3px; }
.source { color: #555; font-size: 13px; }
figure { margin: 1em 0; }
figcaption { color: #555; font-size: 13px; }
figure img { max-width: 100%; }
table.clips td { text-align: center; vertical-align: top; font-size: 12px; }
table.clips img { width: 128px; height: 128px; image-rendering: pixelated; }
"""


def _code_spans(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _html(sections: list[Section], sources: list[str], skipped: list[str]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>turbo-edge report</title>',
           f"<style>{CSS}</style></head><body>", "<h1>turbo-edge report</h1>",
           f"<p>{_code_spans(_intro(sources, skipped))}</p>"]
    if sections:
        out.append("<ul>" + "".join(f'<li><a href="#{_slug(s.title)}">{e(s.title)}</a></li>' for s in sections) + "</ul>")
    for section in sections:
        out.append(f'<h2 id="{_slug(section.title)}">{e(section.title)}</h2>')
        if section.source:
            command = f"; command: <code>{e(section.command)}</code>" if section.command else ""
            out.append(f'<p class="source">Source: <code>{e(section.source)}</code>{command}</p>')
        for block in section.blocks:
            if isinstance(block, Table):
                out.append('<div class="wide"><table>' + (f"<caption>{e(block.caption)}</caption>" if block.caption else ""))
                out.append("<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in block.columns) + "</tr></thead><tbody>")
                for row in block.cells:
                    out.append("<tr>" + "".join(f'<td{" class=num" if n else ""}>{e(c)}</td>' for c, n in zip(row, block.numeric)) + "</tr>")
                out.append("</tbody></table></div>")
            elif isinstance(block, Plot):
                out.append(f'<figure><img src="{e(block.path)}" alt="{e(block.caption)}"><figcaption>{e(block.caption)}</figcaption></figure>')
            elif isinstance(block, ClipGrid):
                for prompt in block.prompts:
                    out.append(f'<div class="wide"><table class="clips"><caption>{e(prompt)}</caption><tr>' + "".join(f"<th>{e(r)}</th>" for r in block.rows) + "</tr><tr>")
                    for row in block.rows:
                        path = block.paths[(row, prompt)]
                        out.append(f'<td><img src="{e(path)}" alt="{e(row)}: {e(prompt)}"></td>' if path else "<td>(missing)</td>")
                    out.append("</tr></table></div>")
            else:
                out.append(f"<p>{_code_spans(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ entry point


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


def render_report(results_dir: str | Path, out_dir: str | Path, clips_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``index.html``, ``plots/*.png`` (and ``clips/`` when ``clips_dir`` is given) into
    ``out_dir`` from every ``*.json`` in ``results_dir``. Returns what was written."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: results directory not found")
    files = sorted(results_dir.glob("*.json"), key=lambda p: (FAMILY_ORDER.index(family_of(p.stem)) if family_of(p.stem) in FAMILY_ORDER
                                                               else len(FAMILY_ORDER), p.name))
    parsed = [(path, _read_json(path)) for path in files]  # every file parsed before anything is written
    loaded = [(path, data) for path, data in parsed if "command" in data]
    skipped = [path.name for path, data in parsed if "command" not in data]
    plots_dir = out_dir / "plots"
    sections = [BUILDERS.get(family_of(path.stem), _generic_section)(path.name, data, plots_dir) for path, data in loaded]
    copied: list[Path] = []
    if clips_dir is not None:
        clip_section, copied = _clip_section(Path(clips_dir), out_dir)
        demo_count = sum(1 for path, _ in loaded if family_of(path.stem) == "demo")
        sections.insert(demo_count, clip_section)  # the videos right after the demo table they belong to
    sources = [path.name for path, _ in loaded]
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(_markdown(sections, sources, skipped))
    html_path.write_text(_html(sections, sources, skipped))
    blocks = [b for s in sections for b in s.blocks]
    plots = [out_dir / b.path for b in blocks if isinstance(b, Plot)]
    demo_rows = sum(len(data.get("rows", [])) for path, data in loaded if family_of(path.stem) == "demo")
    return {
        "report_md": str(md_path), "index_html": str(html_path), "plots": [str(p) for p in plots],
        "clips": [str(p) for p in copied], "files": [str(md_path), str(html_path), *map(str, plots), *map(str, copied)],
        "sources": sources, "skipped": skipped, "rows": sum(len(b.cells) for b in blocks if isinstance(b, Table)), "demo_rows": demo_rows,
    }
