"""Render the benchmark results (``benchmarks/results/*.json``) as ``report.md``, a static ``index.html`` and PNG plots.

Every figure shown is read from a results file; the report only formats (rounds) numbers, it never computes new
ones. Each results file becomes one section, built by the builder registered for its family (the file's stem, or the
part before the first ``_``: ``runtime_builtin.json`` is a ``runtime`` file); unknown families get a generic section
(command and top-level scalar figures). No torch: this runs wherever the results files are.

This module writes ``report.md`` and runs the whole report; the pieces live beside it: ``blocks`` (the section /
table model and value formatting), ``builders`` (one section builder per family), ``html_page`` (``index.html``)
and ``plots`` (the PNGs).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from turbo_edge.report.blocks import (
    Block,
    ClipGrid,
    ReportError,
    Scalar,
    Section,
    Table,
    _intro,
    _read_json,
    _slug,
    format_value,
    key_figures,
    table_from_dicts,
)
from turbo_edge.report.builders import BUILDERS, FAMILY_ORDER, Builder, _generic_section, builder, family_of
from turbo_edge.report.html_page import _html
from turbo_edge.report.plots import Plot
from turbo_edge.spec.outputs import claim_run_dir

__all__ = [
    "BUILDERS", "FAMILY_ORDER", "Block", "Builder", "ClipGrid", "Plot", "ReportError", "Scalar", "Section", "Table",
    "builder", "family_of", "format_value", "key_figures", "render_report", "table_from_dicts",
]


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


# ------------------------------------------------------------------ Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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


# ------------------------------------------------------------------ entry point


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
    claim_run_dir(out_dir, "index.html")  # a report replaces only an earlier report, never a user's folder
    plots_dir = out_dir / "plots"
    sections = [BUILDERS.get(family_of(path.stem), _generic_section)(path.name, data, plots_dir) for path, data in loaded]
    copied: list[Path] = []
    if clips_dir is not None:
        clip_section, copied = _clip_section(Path(clips_dir), out_dir)
        demo_count = sum(1 for path, _ in loaded if family_of(path.stem) == "demo")
        sections.insert(demo_count, clip_section)  # the videos right after the demo table they belong to
    sources = [path.name for path, _ in loaded]
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
