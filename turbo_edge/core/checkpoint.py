"""Training checkpoints in safetensors + JSON only (no pickles), written atomically.

A checkpoint directory holds ``model.safetensors`` (and any other named modules), ``optimizer.safetensors``
(the optimizer's tensors, flattened) and ``state.json`` (step, config hash, optimizer scalars, and for a run
reading a prepared DATA every rank's read position: ``core.train_data``). World batches and noise are pure
functions of (seed, step, rank), so this is all an exact resume needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars["state"].setdefault(str(pid), {})[name] = value
    return tensors, scalars


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, extra in scalars["state"].items():
        state.setdefault(int(pid), {}).update(extra)
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    modules: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``directory/step_XXXXXXX`` atomically, then prune to the newest ``keep`` checkpoints."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{int(state['step']):07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        for name, module in modules.items():
            sd = module.state_dict() if isinstance(module, torch.nn.Module) else module
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{name}.safetensors"))
        meta = dict(state)
        if optimizer is not None:
            tensors, scalars = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer"] = scalars
        meta["rng_torch"] = torch.get_rng_state().tolist()
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | Path) -> Path | None:
    root = Path(directory)
    if not root.is_dir():
        return None
    done = [p for p in sorted(root.glob("step_*")) if (p / "state.json").is_file()]
    return done[-1] if done else None


def load_checkpoint(
    path: str | Path,
    modules: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    expected_config_hash: str | None = None,
) -> dict[str, Any]:
    """Restore modules and optimizer in place; refuse a checkpoint written under another config."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    if expected_config_hash is not None and meta.get("config_hash") != expected_config_hash:
        raise ValueError(
            f"checkpoint {path} was written by a run with config hash {meta.get('config_hash')}, but this run's "
            f"config hash is {expected_config_hash}: resume with the original config, or use a new output directory"
        )
    for name, module in modules.items():
        sd = load_file(str(path / f"{name}.safetensors"))
        if isinstance(module, torch.nn.Module):
            module.load_state_dict(sd)
        else:
            module.clear()
            module.update(sd)
    if optimizer is not None and "optimizer" in meta:
        optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), meta["optimizer"]))
    if "rng_torch" in meta:
        torch.set_rng_state(torch.tensor(meta["rng_torch"], dtype=torch.uint8))
    return meta


def log_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line (the training logs of every stage share this format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
