"""Formatting for the results page (``results_page``): numbers rounded for reading, Markdown tables, and the
machine / command lines every results file's block starts with. Stdlib only (no torch, no numpy)."""

from __future__ import annotations

from typing import Any

FALLBACK_COMMAND = "see benchmarks/README.md"
DASH = "—"

# ------------------------------------------------------------------ numbers


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (whole numbers from 1000 up), anything else as text; missing: a dash."""
    number = _num(value)
    if number is None:
        if value is None:
            return DASH
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{number:.0f}" if abs(number) >= 1000 else f"{number:.{digits}f}"


def acc(value: Any) -> str:
    return fmt(value, 3)


def ms(value: Any) -> str:
    return fmt(value, 1)


def ratio(value: Any) -> str:
    return fmt(value, 2)


def fd(value: Any) -> str:
    return fmt(value, 0)


def seconds_to_ms(value: Any) -> Any:
    number = _num(value)
    return None if number is None else number * 1000.0


def kb_to_mb(value: Any) -> Any:
    number = _num(value)
    return None if number is None else number / 1000.0


def sig(value: Any) -> str:
    """Three significant digits (errors spanning 1e-6 to 1)."""
    number = _num(value)
    return fmt(value) if number is None else f"{number:.3g}"


def pct(value: Any) -> str:
    """A relative change as a signed percentage: 1.5 -> +150 %."""
    number = _num(value)
    return fmt(value) if number is None else f"{number * 100:+.0f} %"


# ------------------------------------------------------------------ Markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(columns: list[str], rows: list[list[str]], numeric_from: int = 1) -> list[str]:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    out = ["| " + " | ".join(_cell(c) for c in columns) + " |",
           "|" + "|".join("---:" if i >= numeric_from else "---" for i in range(len(columns))) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def machine_desc(data: dict[str, Any]) -> str | None:
    """What a results dict recorded about the machine it ran on, or None."""
    parts: list[str] = []
    machine = data.get("machine")
    if isinstance(machine, dict):
        if machine.get("platform"):
            parts.append(str(machine["platform"]))
        if machine.get("cpus") is not None:
            parts.append(f"{machine['cpus']} CPUs")
        if machine.get("threads") is not None:
            parts.append(f"{machine['threads']} threads")
        if "int8_dot_product" in machine:
            flags = machine["int8_dot_product"]
            parts.append("int8 dot product: " + (", ".join(map(str, flags)) if isinstance(flags, list) and flags else "none"))
        if machine.get("formula"):
            parts.append(f"peak {fmt(machine.get('peak_gflops'), 0)} GFLOP/s fp32 ({machine['formula']})")
        load = machine.get("loadavg_at_start")
        if isinstance(load, list) and load and _num(load[0]) is not None:
            parts.append(f"load average at start {fmt(load[0], 2)}")
    elif isinstance(machine, str):
        parts.append(machine)
    if isinstance(data.get("cpu"), str):
        parts.append(f"CPU {data['cpu']}")
    if _num(data.get("cores")) is not None:
        parts.append(f"{data['cores']} cores")
    if isinstance(data.get("torch"), str):
        parts.append(f"torch {data['torch']}")
    return ", ".join(parts) if parts else None


def machine_line(data: dict[str, Any]) -> str:
    desc = machine_desc(data)
    return f"Machine: {desc}." if desc else "Machine: not recorded in the file."


def commands_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, command) pairs the file records: ``command``, ``argv``, ``reproduce`` or a ``commands`` dict."""
    found: list[tuple[str, str]] = []
    for key in ("command", "reproduce"):
        if isinstance(data.get(key), str) and data[key].strip():
            found.append(("", data[key]))
    if isinstance(data.get("argv"), list) and data["argv"]:
        found.append(("", " ".join(map(str, data["argv"]))))
    if isinstance(data.get("commands"), dict):
        found += [(str(k), str(v)) for k, v in data["commands"].items() if isinstance(v, str)]
    return found


def command_lines(data: dict[str, Any]) -> list[str]:
    commands = commands_of(data)
    if not commands:
        return [f"Reproduce: {FALLBACK_COMMAND}."]
    if len(commands) == 1 and not commands[0][0]:
        return [f"Reproduce: `{commands[0][1]}`"]
    return ["Reproduce:", ""] + [f"- {label + ': ' if label else ''}`{cmd}`" for label, cmd in commands]


def file_block(name: str, data: dict[str, Any], body: list[str], extra: list[str] | None = None) -> list[str]:
    """One results file: its name, the machine and command lines, then ``body`` (tables)."""
    out = [f"### `{name}`", "", machine_line(data)]
    out += [""] + (extra or [])
    if extra:
        out.append("")
    out += command_lines(data) + [""] + body
    return out


QUALITY = ["content", "motion", "FD"]


def quality_cells(q: dict[str, Any]) -> list[str]:
    return [acc(q.get("content_acc")), acc(q.get("motion_acc")), fd(q.get("fd"))]

