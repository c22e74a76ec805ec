"""``pytest -p no_torch``: run tests as on a machine where torch (and diffusers, transformers, tensorrt) is not
installed: importing any of them raises ``ModuleNotFoundError``. CI runs the runtime's tests this way once."""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "tensorrt", "nncf", "torch_pruning")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by tests/no_torch.py)", name=fullname)
        return None


# Active from import on (``-p no_torch`` loads it before any conftest): never import this module otherwise.
_already = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
if _already:
    raise RuntimeError(f"{_already[:3]} were imported before tests/no_torch.py could block them")
sys.meta_path.insert(0, _Blocker())
