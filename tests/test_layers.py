"""The import graph points one way: apps -> stages -> core -> spec, runtime -> spec only, and no cycles.

Walks every import with ``ast`` (function-level ones too), so an import hidden in a function body counts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from layers import cycles, import_edges, package_cycles, summary, violations

PACKAGE = Path(__file__).resolve().parents[1] / "turbo_edge"


def test_every_import_follows_the_layer_order():
    edges = import_edges(PACKAGE)
    assert len(edges) > 150  # the walk sees the package (function-level imports included)
    assert any(e.in_function for e in edges)
    assert violations(edges) == []


def test_no_import_cycles():
    edges = import_edges(PACKAGE)
    assert cycles(edges) == [] and package_cycles(edges) == []


def test_runtime_and_spec_import_only_spec():
    allowed = {"turbo_edge.spec": ("turbo_edge.spec",), "turbo_edge.runtime": ("turbo_edge.spec", "turbo_edge.runtime")}
    for e in import_edges(PACKAGE):
        for layer, targets in allowed.items():
            if e.source.startswith(layer):
                assert e.target.startswith(targets) or e.target == "turbo_edge", e


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "turbo_edge"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    return root


@pytest.mark.parametrize("source,line,message", [
    # The edges a review of the old code found, planted back one at a time.
    ("core/planted.py", "from turbo_edge.runtime.noise import normal", "core (layer 1) may not import runtime"),
    ("core/planted.py", "def f():\n    from turbo_edge.prune import train", "core (layer 1) may not import prune"),
    ("distill/planted.py", "from turbo_edge.prune import losses", "distill (layer 2) may not import prune"),
    ("export/planted.py", "def f():\n    import turbo_edge.distill.train", "export (layer 2) may not import distill"),
    ("runtime/planted.py", "from turbo_edge.core import world", "runtime (layer 1) may not import core"),
    ("spec/planted.py", "from turbo_edge.runtime import pipeline", "spec (layer 0) may not import runtime"),
])
def test_a_planted_back_edge_fails(tree: Path, source: str, line: str, message: str):
    (tree / source).write_text(line + "\n")
    found = violations(import_edges(tree))
    assert len(found) == 1 and message in found[0] and "planted" in found[0]


def test_a_planted_cycle_fails(tree: Path):
    (tree / "prune" / "a.py").write_text("from turbo_edge.prune import b\n")
    (tree / "prune" / "b.py").write_text("def f():\n    from turbo_edge.prune import a\n")
    assert ["turbo_edge.prune.a", "turbo_edge.prune.b"] in cycles(import_edges(tree))
    assert summary(tree)["module_cycles"] == 1
