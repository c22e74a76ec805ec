"""The package's import graph, read with ``ast`` (function-level imports included), and the layer rule it must keep.

    apps     cli · demo · evaluate · report · serve · bench   may import anything below (and each other)
    stages   teacher · distill · prune · export · decoder  never import each other: they meet through artifacts
    core     torch-side shared code                      imports spec only
    runtime  torch-free runtime                          imports spec only
    spec     torch-free contracts                        imports nothing of turbo_edge outside spec

``python tests/layers.py`` prints the graph's counts (back edges, cycles) for a source tree.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

LAYERS = {
    "spec": 0, "": 0,  # "": the package root (turbo_edge/__init__.py: the version string)
    "runtime": 1, "core": 1,
    "teacher": 2, "distill": 2, "prune": 2, "export": 2, "decoder": 2,
    "cli": 3, "demo": 3, "evaluate": 3, "report": 3, "serve": 3, "bench": 3,
}
APPS = 3


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    line: int
    in_function: bool


def module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(modules: set[str], base: str, names: list[str]) -> list[str]:
    """``from base import a, b``: the submodules a / b where they are modules, else ``base`` itself."""
    out = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
    return out if len(out) == len(names) else [*out, base]


def import_edges(root: Path) -> list[Edge]:
    """Every ``turbo_edge`` import in the package at ``root`` (the ``turbo_edge`` folder), at any depth."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(root, f) for f in files}
    edges = []
    for file in files:
        source = module_name(root, file)
        package = source if file.name == "__init__.py" else source.rpartition(".")[0]
        tree = ast.parse(file.read_text(), str(file))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        nested = {id(node) for f in functions for node in ast.walk(f) if node is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = _resolve(modules, base, [a.name for a in node.names])
            else:
                continue
            for target in targets:
                if target == "turbo_edge" or target.startswith("turbo_edge."):
                    edges.append(Edge(source, target, node.lineno, id(node) in nested))
    return edges


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top not in LAYERS:
        raise KeyError(f"{module}: top-level name {top!r} has no layer; add it to tests/layers.py LAYERS")
    return top, LAYERS[top]


def violations(edges: list[Edge]) -> list[str]:
    """Edges against the layer order, one line each."""
    bad = []
    for e in edges:
        (a, la), (b, lb) = layer_of(e.source), layer_of(e.target)
        if a == b:
            continue
        if lb < la and not (a == "runtime" and b != "spec" and b != ""):
            continue
        if la == lb == APPS:
            continue
        where = "in a function" if e.in_function else "at module level"
        bad.append(f"{e.source}:{e.line} imports {e.target} ({where}): {a or 'turbo_edge'} (layer {la}) may not import {b} (layer {lb})")
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_cycles(edges: list[Edge]) -> list[list[str]]:
    """Import cycles between top-level packages (core <-> runtime, prune <-> distill, ...)."""
    lifted = [Edge(f"turbo_edge.{layer_of(e.source)[0]}", f"turbo_edge.{layer_of(e.target)[0]}", e.line, e.in_function) for e in edges]
    return cycles([e for e in lifted if e.source != e.target])


def summary(root: Path) -> dict[str, int]:
    edges = import_edges(root)
    cross = [e for e in edges if layer_of(e.source)[0] != layer_of(e.target)[0]]
    return {
        "imports": len(edges), "function_level_imports": sum(e.in_function for e in edges),
        "cross_package_imports": len(cross), "back_edges": len(violations(edges)),
        "module_cycles": len(cycles(edges)), "package_cycles": len(package_cycles(edges)),
    }


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "turbo_edge")
    for key, value in summary(target).items():
        print(f"{key}: {value}")
    for line in violations(import_edges(target)):
        print("  " + line)
