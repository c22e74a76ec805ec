"""The report's section builders, registered by result family (the results file's stem, or the part before its first
``_``); a family without a builder gets the generic section (command and top-level scalar figures)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from turbo_edge.core.world import MOTIONS
from turbo_edge.report.blocks import (
    Block,
    ReportError,
    Section,
    Table,
    _flatten,
    _is_scalar,
    format_value,
    key_figures,
    table_from_dicts,
)
from turbo_edge.report.plots import plot_bars, plot_latency_quality, plot_stage_latency

Builder = Callable[[str, dict[str, Any], Path], Section]
BUILDERS: dict[str, Builder] = {}
FAMILY_ORDER = ("demo", "teacher", "distill", "prune", "export", "runtime", "bench")


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


BENCH_ROW_COLUMNS = {
    "row": "row", "backend": "backend", "precision": "precision", "steps": "steps", "batch": "batch", "threads": "threads",
    "end_to_end_ms": "end to end (ms, median)", "end_to_end_source": "end to end is", "videos_per_min": "videos / min",
    "composition_rel_diff": "composed ÷ measured - 1", "peak_rss_mb": "peak RSS (MB)", "device_memory_mb": "device memory (MB)",
}
BENCH_STAGE_COLUMNS = {
    "row": "row", "stage": "stage", "calls": "calls / video batch", "median_ms": "median (ms)", "p90_ms": "p90 (ms)", "min_ms": "min (ms)",
    "share_of_end_to_end": "share of end to end", "gflop": "GFLOP / call", "achieved_gflops": "achieved GFLOP/s", "pct_of_peak": "% of peak",
}
BENCH_PARTS = {"text_encoder": "text encoder", "unet": "UNet (all steps)", "vae_decoder": "VAE decode"}


@builder("bench")
def _bench_section(name: str, data: dict[str, Any], plots_dir: Path) -> Section:
    """``turbo-edge bench`` records: one row per model / backend / precision, its stages, and a stacked plot per row."""
    rows = _check_rows(name, data, "rows", ("end_to_end_ms", "videos_per_min", "composition_rel_diff", "peak_rss_mb"))
    blocks: list[Block] = []
    if rows:
        blocks.append(table_from_dicts([{k: r.get(k) for k in BENCH_ROW_COLUMNS} for r in rows], list(BENCH_ROW_COLUMNS), BENCH_ROW_COLUMNS,
                                       "end to end per row (a teacher's: composed from its stage medians, checked by real videos)"))
        stages = []
        for i, r in enumerate(rows):
            entries = _check_rows(name, {"stages": r.get("stages", [])}, "stages", ("median_ms", "p90_ms", "min_ms", "gflop", "pct_of_peak"))
            stages += [{"row": r.get("row", str(i)), **{k: s.get(k) for k in BENCH_STAGE_COLUMNS if k != "row"}} for s in entries]
        blocks.append(table_from_dicts(stages, list(BENCH_STAGE_COLUMNS), BENCH_STAGE_COLUMNS, "per stage (times per call)"))
        bars = []
        for r in rows:
            per = {s.get("stage"): s for s in r.get("stages", [])}
            bars.append({"row": r.get("row", ""), **{f"{k}_ms": (per[k].get("median_ms") or 0.0) * (per[k].get("calls") or 0)
                                                     for k in BENCH_PARTS if k in per}})
        blocks.append(plot_stage_latency(bars, {f"{k}_ms": v for k, v in BENCH_PARTS.items()}, plots_dir / f"{Path(name).stem}_stages.png",
                                         title="time per video batch by stage (median x calls)",
                                         caption="per-stage time of one video batch, stacked: text encoder, every UNet step, VAE decode"))
    blocks += _structured_blocks(data, {"rows", "config"})
    return Section("bench: per-stage latency, FLOPs and memory", name, data.get("command"), blocks)
