"""The report's PNG plots, drawn on matplotlib's Agg canvas through ``Figure`` (no pyplot, no global backend state)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Plot:
    path: str  # relative to the report directory
    caption: str


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: Path, caption: str) -> Plot:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return Plot(f"{path.parent.name}/{path.name}", caption)


def plot_latency_quality(rows: list[dict[str, Any]], path: Path) -> Plot | None:
    """Content (circle) and motion (triangle) accuracy against latency; each row one colour and one number, the legend
    names the numbers (rows that differ only in backend sit close together: full labels would overlap)."""
    from matplotlib.lines import Line2D

    points = [r for r in rows if isinstance(r.get("latency_ms"), int | float) and r["latency_ms"] > 0
              and (r.get("content_acc") is not None or r.get("motion_acc") is not None)]
    if not points:
        return None
    fig, ax = _figure(11, 1.5 + max(4.0, 0.25 * len(points)))
    colours = [f"C{i % 10}" if len(points) <= 10 else _tab20(i) for i in range(len(points))]
    handles = []
    for number, (r, colour) in enumerate(zip(points, colours), start=1):
        metrics = [(m, marker) for m, marker in (("content_acc", "o"), ("motion_acc", "^")) if r.get(m) is not None]
        for metric, marker in metrics:
            ax.scatter([r["latency_ms"]], [r[metric]], marker=marker, s=55, color=colour, edgecolors="white", linewidths=0.5, zorder=3)
        ys = [r[m] for m, _ in metrics]
        ax.plot([r["latency_ms"]] * len(ys), ys, color=colour, lw=0.8, alpha=0.5, zorder=2)  # joins a row's two points
        ax.annotate(str(number), (r["latency_ms"], max(ys)), textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour)
        label = " ".join(str(r[k]) for k in ("row", "backend", "precision") if r.get(k) is not None)
        handles.append(Line2D([], [], marker="s", ls="", color=colour, label=f"{number}: {label}"))
    handles += [Line2D([], [], marker="o", ls="", color="0.4", label="content acc"), Line2D([], [], marker="^", ls="", color="0.4", label="motion acc")]
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.1)  # accuracy 0 stays visible
    ax.margins(x=0.1)
    ax.set_xlabel("latency per video, median (ms, log scale)")
    ax.set_ylabel("evaluator accuracy")
    ax.set_title("latency vs quality")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return _save(fig, path, "latency vs quality: content (circles) and motion (triangles) accuracy of each row that has them")


def _tab20(i: int):
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def plot_stage_latency(stages: list[dict[str, Any]], parts: dict[str, str], path: Path, title: str = "latency per stage (UNet: one step)",
                       caption: str = "latency per stage, stacked: text encoder, one UNet step, VAE decode") -> Plot:
    """One horizontal bar per row, its ``parts`` (key -> legend label) stacked left to right."""
    fig, ax = _figure(8, 1.6 + 0.5 * len(stages))
    positions = range(len(stages))  # by position: two rows with one label stay two bars
    left = [0.0] * len(stages)
    for key, label in parts.items():
        widths = [float(s.get(key) or 0.0) for s in stages]
        ax.barh(positions, widths, left=left, label=label)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(positions, [str(s.get("row", "")) for s in stages])
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=len(parts), fontsize=8)
    return _save(fig, path, caption)


def plot_bars(labels: list[str], values: list[float], value_labels: list[str], path: Path, title: str) -> Plot:
    fig, ax = _figure(8, 1.2 + 0.4 * len(labels))
    positions = range(len(labels))
    bars = ax.barh(positions, values, color="tab:blue")
    ax.set_yticks(positions, labels)
    ax.bar_label(bars, labels=value_labels, padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title(title)
    ax.margins(x=0.15)
    return _save(fig, path, title)
