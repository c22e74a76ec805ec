"""The bundle manifest: schema, the sampler contract and schedule numbers, and the sha256 of every file.

The manifest is the only thing the torch-free runtime reads to know how to run a bundle, so everything it
needs (alphas_cumprod, timesteps per step count, guidance, shapes) is written here as plain numbers, taken
from ``turbo_edge.core.param`` (the one parameterisation module).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("schema_version", "turbo_edge_version", "created", "source", "sampler", "latent", "video", "text", "components", "parity", "files")
SAMPLER_KINDS = ("ddim_cfg", "consistency")


class BundleError(ValueError):
    """A bundle directory that is missing, malformed, or whose files changed since export."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest itself, keyed by POSIX relative path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, f".{MANIFEST}.tmp")
    }


def sampler_section(model: Any, default_steps: int | None, supported_steps: tuple[int, ...] | None, guidance: float | None) -> dict[str, Any]:
    """The sampler contract: a teacher's DDIM+CFG, or a student's consistency sampler from its turbo_edge.json."""
    from turbo_edge.core import param

    sched = model.scheduler_config
    n = int(sched.get("num_train_timesteps", 1000))
    abar = param.alphas_cumprod(sched)
    meta = model.meta or {}
    student = dict(meta.get("sampler") or {})
    kind = student.get("kind", "consistency" if meta.get("kind") in ("student", "pruned") else "ddim_cfg")
    if kind not in SAMPLER_KINDS:
        raise BundleError(f"sampler kind {kind!r} in {model.path} is not one of {SAMPLER_KINDS}")
    steps = default_steps or int(student.get("default_steps", meta.get("default_steps", 50 if kind == "ddim_cfg" else 4)))
    supported = sorted(set(supported_steps or student.get("supported_steps") or (steps, *((10, 25) if kind == "ddim_cfg" else (1, 2, 4, 8)))))
    w_dim = model.unet.config.get("time_cond_proj_dim")
    section: dict[str, Any] = {
        "kind": kind,
        "prediction_type": str(sched.get("prediction_type", "epsilon")),
        "num_train_timesteps": n,
        "alphas_cumprod": [float(a) for a in abar],
        # DDIM's last step goes to abar = 1 (set_alpha_to_one) or to abar[0]: the runtime needs it to land on x0.
        "final_alpha_cumprod": 1.0 if sched.get("set_alpha_to_one", True) else float(abar[0]),
        "default_steps": steps,
        "supported_steps": supported,
        "timesteps": {str(s): [int(t) for t in param.ddim_timesteps(n, s)] for s in supported},
        "guidance": float(guidance if guidance is not None else student.get("guidance", meta.get("default_guidance", 3.0))),
        "uses_cfg": kind == "ddim_cfg",
        "w_embedding_dim": int(w_dim) if w_dim else None,
        "timestep_scaling": 10.0,
        "sigma_data": 0.5,
    }
    # A student's own contract wins over the defaults above (its timesteps, scalings, guidance, w embedding).
    for key in ("prediction_type", "guidance", "uses_cfg", "w_embedding_dim", "timestep_scaling", "sigma_data", "timesteps"):
        if key in student:
            section[key] = student[key]
    section["timesteps"] = {str(k): [int(t) for t in v] for k, v in section["timesteps"].items()}
    section["supported_steps"] = sorted(int(k) for k in section["timesteps"])
    return section


def new_manifest(**sections: Any) -> dict[str, Any]:
    from turbo_edge import __version__

    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"schema_version": SCHEMA_VERSION, "turbo_edge_version": __version__, "created": now, **sections}


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file now in ``root`` into the manifest and write it (last, so it describes what is there)."""
    manifest = {**manifest, "files": hash_files(root)}
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, root / MANIFEST)  # a reader sees the old manifest or the new one, never half of one
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    mf = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory")
    if not mf.is_file():
        raise BundleError(f"{root} has no {MANIFEST}: not a turbo-edge bundle (or an export that never finished)")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mf} is not valid JSON ({exc})") from exc
    return manifest


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check the manifest's schema and every file's sha256; return the manifest. Raises ``BundleError``."""
    root = Path(path)
    manifest = read_manifest(root)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{root / MANIFEST}: schema_version {version!r}, this build reads {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{root / MANIFEST} lacks key(s) {missing}")
    for name, entry in manifest["components"].items():
        for precision, rel in entry["files"].items():
            if rel not in manifest["files"]:
                raise BundleError(f"{root / MANIFEST}: component {name} {precision} file {rel} is not in the hashed file list")
    for rel, digest in manifest["files"].items():
        f = root / rel
        if not f.is_file():
            raise BundleError(f"bundle file {f} is missing (listed in {MANIFEST})")
        actual = sha256_file(f)
        if actual != digest:
            raise BundleError(f"bundle file {f} changed since export: sha256 {actual[:12]}... != manifest {digest[:12]}...; re-export the bundle")
    extra = sorted(set(hash_files(root)) - set(manifest["files"]))
    if extra:  # caches a runtime may leave beside the graphs are harmless; say so rather than fail
        log.warning("bundle %s holds file(s) not in its manifest: %s", root, extra)
    return manifest
