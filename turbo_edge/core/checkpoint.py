"""Training checkpoints in safetensors + JSON only (no pickles), written atomically.

A checkpoint directory holds ``model.safetensors`` (and any other named modules), ``optimizer.safetensors``
(the optimizer's tensors, flattened) and ``state.json`` (step, config hash, optimizer scalars, and for a run
reading a prepared DATA every rank's read position: ``core.train_data``). World batches and noise are pure
functions of (seed, step, rank), so this is all an exact resume needs.

``state.json`` records the sha256 of every other file of the checkpoint (``files``), and a resume checks them
before a tensor loads, as bundles and DATA shards are checked: a zeroed, truncated or swapped file is refused in
one line naming it (``CheckpointError``), and so is a ``state.json`` that is not the JSON object a save writes.
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

from turbo_edge.spec.bundle import sha256_file

STATE = "state.json"


class CheckpointError(ValueError):
    """A checkpoint that is damaged, incomplete or edited since it was saved (one line: the file and what to do)."""


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
        meta["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / STATE).write_text(json.dumps(meta, indent=1, default=str))
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


def _redo(path: Path) -> str:
    return (f"delete {path} to resume from the checkpoint before it (or start the run again), "
            "and check the disk: a checkpoint is never rewritten in place")


def read_state(path: str | Path) -> dict[str, Any]:
    """``state.json`` of checkpoint ``path``: a JSON object with an integer step; ``CheckpointError`` otherwise."""
    path = Path(path)
    file = path / STATE
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no {STATE} (its save never finished); {_redo(path)}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{file} is not UTF-8 text (damaged); {_redo(path)}") from None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise CheckpointError(f"{file} is not valid JSON{where}: truncated or damaged; {_redo(path)}") from None
    if not isinstance(meta, dict) or isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"{file} is not a checkpoint's state (a JSON object with an integer step); {_redo(path)}")
    files = meta.get("files")
    if files is not None and (not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values())):
        raise CheckpointError(f"{file}: files is not a table of sha256 digests; {_redo(path)}")
    return meta


def verify_checkpoint(path: str | Path, names: list[str] | None = None) -> dict[str, Any]:
    """Check every file ``state.json`` lists against its sha256 (and that each of ``names`` is listed); returns the
    state. A checkpoint saved before hashes were recorded (no ``files``) is accepted as it is."""
    from turbo_edge.spec.paths import OutsideRoot, inside

    path = Path(path)
    meta = read_state(path)
    files = meta.get("files")
    if files is None:
        return meta
    for name in names or []:
        if name not in files:
            raise CheckpointError(f"{path / STATE} lists no {name}, which this run needs: a checkpoint of another run "
                                  "or edited since; use the run's own output directory")
    for name, digest in files.items():
        try:
            file = inside(path, name)
        except OutsideRoot as exc:
            raise CheckpointError(f"{path / STATE}: file {exc}; a checkpoint names only its own files: {_redo(path)}") from None
        if not file.is_file():
            raise CheckpointError(f"{file} is missing from its checkpoint; {_redo(path)}")
        if sha256_file(file) != digest:
            raise CheckpointError(f"{file} does not match its sha256 in {STATE} (damaged or changed since it was saved); {_redo(path)}")
    return meta


def load_tensors(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path/name.safetensors``, the file's sha256 checked first; one line for a damaged file."""
    path = Path(path)
    verify_checkpoint(path, [f"{name}.safetensors"])
    return _load(path / f"{name}.safetensors", path)


def _load(file: Path, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing from its checkpoint; {_redo(path)}") from None
    except Exception as exc:  # noqa: BLE001  safetensors' SafetensorError is no ValueError
        raise CheckpointError(f"{file} is not a readable safetensors file ({' '.join(str(exc).split())}); {_redo(path)}") from None


def load_checkpoint(
    path: str | Path,
    modules: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    expected_config_hash: str | None = None,
) -> dict[str, Any]:
    """Restore modules and optimizer in place; refuse a checkpoint written under another config, or one whose files
    do not match the sha256 ``state.json`` records (checked before any tensor loads)."""
    path = Path(path)
    meta = read_state(path)
    if expected_config_hash is not None and meta.get("config_hash") != expected_config_hash:
        raise ValueError(
            f"checkpoint {path} was written by a run with config hash {meta.get('config_hash')}, but this run's "
            f"config hash is {expected_config_hash}: resume with the original config, or use a new output directory"
        )
    needed = [f"{name}.safetensors" for name in modules]
    if optimizer is not None and "optimizer" in meta:
        needed.append("optimizer.safetensors")
    verify_checkpoint(path, needed)
    for name, module in modules.items():
        sd = _load(path / f"{name}.safetensors", path)
        try:
            if isinstance(module, torch.nn.Module):
                module.load_state_dict(sd)
            else:
                module.clear()
                module.update(sd)
        except RuntimeError as exc:  # keys or shapes of another model
            raise CheckpointError(f"{path / (name + '.safetensors')} does not fit this run's {name} "
                                  f"({' '.join(str(exc).split())[:200]}); use the run's own output directory") from None
    if optimizer is not None and "optimizer" in meta:
        optimizer.load_state_dict(_unflatten_optimizer(_load(path / "optimizer.safetensors", path), meta["optimizer"]))
    if "rng_torch" in meta:
        torch.set_rng_state(torch.tensor(meta["rng_torch"], dtype=torch.uint8))
    return meta


def log_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line (the training logs of every stage share this format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
