"""Read a bundle directory (``manifest.json`` + ONNX files + tokenizer), torch-free, and verify its files.

This is the read-only side of the bundle format written by ``turbo_edge.export``; it is reimplemented here
(not imported) because the export package pulls torch, and the runtime must not. ``runtime/cpp/src/bundle.cpp``
reads the same keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.runtime.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
PRECISIONS = ("fp32", "fp16", "int8")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(root: Path, files: dict[str, str]) -> None:
    """Raise ``BundleError`` naming the first missing or changed file (a file whose sha256 differs)."""
    if not files:
        raise BundleError(f"{root / MANIFEST} lists no files; re-export the bundle with `turbo-edge export`")
    for rel, expected in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            raise BundleError(f"bundle file {rel} is missing from {root}; re-export the bundle or copy it again whole")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {rel} in {root} was changed after export (sha256 {actual[:12]}… != manifest {expected[:12]}…); "
                f"re-export the bundle, or restore the original file"
            )


@dataclass(frozen=True)
class SamplerSpec:
    """The sampler contract the bundle carries, so the runtime computes no schedule of its own."""

    kind: str  # "ddim_cfg" (teacher bundles) or "consistency" (student / pruned bundles)
    prediction_type: str
    num_train_timesteps: int
    alphas_cumprod: np.ndarray  # float64 [num_train_timesteps]
    final_alpha_cumprod: float  # abar "before t=0", where DDIM's last step lands
    default_steps: int
    supported_steps: tuple[int, ...]
    timesteps: dict[int, tuple[int, ...]]
    guidance: float
    uses_cfg: bool
    w_embedding_dim: int | None
    timestep_scaling: float
    sigma_data: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplerSpec:
        if d["kind"] not in ("ddim_cfg", "consistency"):
            raise BundleError(f"sampler kind {d['kind']!r} is not one this runtime runs (ddim_cfg, consistency)")
        return cls(
            kind=d["kind"],
            prediction_type=d["prediction_type"],
            num_train_timesteps=int(d["num_train_timesteps"]),
            alphas_cumprod=np.asarray(d["alphas_cumprod"], dtype=np.float64),
            final_alpha_cumprod=float(d.get("final_alpha_cumprod", 1.0)),
            default_steps=int(d["default_steps"]),
            supported_steps=tuple(int(s) for s in d["supported_steps"]),
            timesteps={int(k): tuple(int(t) for t in v) for k, v in d["timesteps"].items()},
            guidance=float(d["guidance"]),
            uses_cfg=bool(d["uses_cfg"]),
            w_embedding_dim=None if d.get("w_embedding_dim") is None else int(d["w_embedding_dim"]),
            timestep_scaling=float(d.get("timestep_scaling", 10.0)),
            sigma_data=float(d.get("sigma_data", 0.5)),
        )


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    sampler: SamplerSpec

    @property
    def latent(self) -> dict[str, Any]:
        return self.manifest["latent"]

    @property
    def video(self) -> dict[str, Any]:
        return self.manifest["video"]

    @property
    def text(self) -> dict[str, Any]:
        return self.manifest["text"]

    @property
    def closed_vocabulary(self) -> list[str] | None:
        return self.text.get("closed_vocabulary")

    def component(self, name: str) -> dict[str, Any]:
        return self.manifest["components"][name]

    def model_path(self, name: str, precision: str) -> Path:
        """The ONNX file of component ``name`` at ``precision``; components without that variant stay fp32."""
        files = self.component(name)["files"]
        if precision != "fp32" and not files.get(precision) and name == "unet":
            have = sorted(k for k, v in files.items() if v)
            raise BundleError(f"this bundle has no {precision} UNet (it has {have}); export it with `--precision {precision}` or pick one of those")
        return self.root / (files.get(precision) or files["fp32"])

    def profile(self, name: str) -> dict[str, dict[str, list[int]]]:
        return self.component(name).get("profile") or {}


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read ``manifest.json``, check the schema, and (``verify``) the sha256 of every listed file."""
    root = Path(path).expanduser()
    if not (root / MANIFEST).is_file():
        raise BundleError(f"{root} is not a bundle (no {MANIFEST}); create one with `turbo-edge export --model MODEL --out {root}`")
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{root / MANIFEST} is not valid JSON ({e}); re-export the bundle") from e
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"bundle schema_version {version} is not supported by this runtime (reads {SCHEMA_VERSION}); re-export or upgrade turbo-edge")
    missing = [k for k in ("sampler", "latent", "video", "text", "components", "files") if k not in manifest]
    missing += [f"components.{c}" for c in COMPONENTS if c not in manifest.get("components", {})]
    if missing:
        raise BundleError(f"{root / MANIFEST} lacks {missing}; re-export the bundle")
    if verify:
        verify_files(root, manifest["files"])
        listed = set(manifest["files"]) | {MANIFEST}
        extra = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in listed)
        if extra:
            raise BundleError(f"bundle {root} holds files not in its manifest: {extra}; remove them or re-export the bundle")
    return Bundle(root=root, manifest=manifest, sampler=SamplerSpec.from_dict(manifest["sampler"]))
