"""A prepared dataset on disk (what ``data prepare`` writes) and its reader, ``PreparedData``.

Layout of a dataset directory::

    index.json                 versioned: model + fingerprint, geometry, sampling, shards (samples, sha256), bad counts
    shard-00000.safetensors    latents  [n, F, C, h, w]  VAE latent mean * scaling_factor (what the distiller's x0 is)
    shard-00001.safetensors    text     [n, L, D]        the frozen text encoder's last hidden state (what the UNet reads)
    ...                        metadata: captions and sources, the run id, and the resume point after it (one JSON record)

Shards are written whole under a temp name and renamed, and never rewritten; ``index.json`` is rewritten after each
one. The reader checks each shard's sha256 against the index as it loads it, so a modified shard is refused.
Rank ``r`` of ``world_size`` reads shards ``perm[r::world_size]`` of a per-epoch permutation drawn from ``seed``;
samples inside a shard are shuffled with a per-(epoch, shard) stream, so an epoch is a pure function of
(seed, epoch, rank, world_size) and a ``Position`` (epoch, shard, offset) resumes it exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbo_edge.core.pipeline_io import resolve_model_path
from turbo_edge.spec.paths import OutsideRoot, inside

INDEX = "index.json"
INDEX_FORMAT = "turbo-edge-prepared-data"
INDEX_VERSION = 1
SHARD_FORMAT = "turbo-edge-prepared-shard"
SHARD_KEY = "turbo_edge"  # the one safetensors metadata key of a shard


# What the data depends on: a student (its own UNet, the teacher's VAE and text encoder copied) matches its teacher.
FINGERPRINTED = ("vae", "text_encoder", "tokenizer")
# JSON keys that record where or how a component was saved, not what it computes: a copy saved elsewhere, or loaded
# in another dtype and saved again (the weights' own bytes are hashed), is the same model.
# transformers 5 adds ``is_local`` / ``local_files_only`` to tokenizer_config.json when it saves a tokenizer it loaded
# from a folder: a student saved from its teacher then matches the teacher's DATA, whichever way the teacher was written.
LEGACY_PROVENANCE_KEYS = ("_name_or_path", "_diffusers_version", "_commit_hash", "transformers_version", "dtype", "torch_dtype",
                          "padding", "truncation")  # tokenizer.json's last call state: encode_text sets both on every call
PROVENANCE_KEYS = (*LEGACY_PROVENANCE_KEYS, "is_local", "local_files_only")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path, provenance: tuple[str, ...] = PROVENANCE_KEYS) -> str:
    if path.suffix == ".json":
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            content = None
        if isinstance(content, dict):
            kept = {k: v for k, v in content.items() if k not in provenance}
            return sha256_bytes(json.dumps(kept, sort_keys=True).encode())
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(model: str | os.PathLike[str], provenance: tuple[str, ...] = PROVENANCE_KEYS) -> tuple[str, dict[str, str]]:
    """sha256 over the files of the components the data depends on (weights and tokenizer files as bytes, JSON
    configs without their ``provenance`` keys), and the per-file hashes it combines ({"vae/config.json": ..., ...})."""
    root = resolve_model_path(model)
    files = {f.relative_to(root).as_posix(): _file_sha256(f, provenance)
             for comp in FINGERPRINTED for f in sorted((root / comp).rglob("*")) if f.is_file()}
    return sha256_bytes(json.dumps(files, sort_keys=True).encode()), files


def shard_metadata(data: bytes) -> dict[str, Any]:
    """The turbo-edge record in a shard's safetensors header. It is one JSON string under one key: safetensors
    writes its metadata map in no fixed order, and one key keeps a shard's bytes (so its sha256) reproducible."""
    if len(data) < 8:
        raise ValueError("too short to be a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or 8 + size > len(data):
        raise ValueError("its safetensors header length is out of range")
    meta = json.loads(data[8:8 + size]).get("__metadata__") or {}
    record = json.loads(meta.get(SHARD_KEY, "null"))
    if not isinstance(record, dict):
        raise ValueError(f"its header has no {SHARD_KEY!r} record")
    return record


def read_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``index.json`` of a prepared dataset, format and version checked, and every shard entry well-formed with its
    ``file`` inside the dataset (``spec.paths.inside``: the bundle's rule, links followed)."""
    from turbo_edge.core.sources import parse_json

    root = Path(path)
    file = root / INDEX
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no {INDEX}: it is not a prepared dataset; make one with `turbo-edge data prepare`")
    redo = "re-run `turbo-edge data prepare` into a new --out"
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file} is not UTF-8 (byte {exc.start + 1}); it was damaged or edited: {redo}") from None
    index = parse_json(text, str(file), redo)
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{file} is not a turbo-edge prepared-data index; make one with `turbo-edge data prepare`")
    if index.get("version") != INDEX_VERSION or isinstance(index.get("version"), bool):
        raise ValueError(f"{file} is prepared-data version {index.get('version')}; this build reads {INDEX_VERSION}: "
                         "re-run `turbo-edge data prepare` with this build")
    geometry = index.get("geometry", {})
    if not isinstance(geometry, dict) or any(isinstance(geometry.get(k), bool) or not isinstance(geometry.get(k), int) or geometry[k] < 1
                                             for k in ("frames", "height", "width")):
        raise ValueError(f"{file}: geometry {geometry!r} is not frames / height / width counts; {redo}")
    shards = index.get("shards", [])
    if not isinstance(shards, list):
        raise ValueError(f"{file}: shards is not a list; {redo}")
    for k, entry in enumerate(shards):
        _check_entry(root, file, k, entry, redo)
    return index


def _check_entry(root: Path, file: Path, k: int, entry: Any, redo: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{file}: shard {k} is not a JSON object; {redo}")
    try:
        inside(root, entry.get("file"))
    except OutsideRoot as exc:
        raise ValueError(f"{file}: shard {k}'s file {exc}; a dataset may only name its own shards: {redo}") from None
    samples, digest = entry.get("samples"), entry.get("sha256")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(f"{file}: shard {k}'s samples {samples!r} is not a count; {redo}")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ValueError(f"{file}: shard {k}'s sha256 {digest!r} is not a sha256; {redo}")


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a rank's reading stands: the next sample is sample ``offset`` (in shuffled order) of the group of shards
    that starts at the rank's ``shard``-th shard in ``epoch`` (one shard a group unless read with ``mix``). A checkpoint
    stores ``to_dict()``."""

    epoch: int = 0
    shard: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Position:
        return cls(int(d["epoch"]), int(d["shard"]), int(d["offset"]))


@dataclasses.dataclass
class Batch:
    latents: torch.Tensor  # float32 [B, F, C, h, w], scaled (the distiller permutes to [B, C, F, h, w])
    text: torch.Tensor  # float32 [B, L, D]
    captions: list[str]
    sources: list[str]
    position: Position  # where to resume to continue after this batch
    ids: list[tuple[int, int]]  # each sample's (shard in the index, row in that shard): what it is, whatever the order


@dataclasses.dataclass
class Shard:
    latents: torch.Tensor  # in the stored dtype (float16 by default: half the memory a float32 copy would take)
    text: torch.Tensor  # likewise
    captions: list[str]
    sources: list[str]


class PreparedData:
    """Read a prepared dataset: verify it, check it suits a model, and iterate batches per rank, resumably."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.index = read_index(self.path)
        if not self.index.get("complete"):
            raise ValueError(f"{self.path} is not finished ({len(self.index.get('shards', []))} shards so far): run its command "
                             f"again to finish it: {self.index.get('command', 'turbo-edge data prepare ...')}")
        self.shards: list[dict[str, Any]] = list(self.index["shards"])
        missing = [s["file"] for s in self.shards if not (self.path / s["file"]).is_file()]  # names checked by read_index
        if missing:
            raise FileNotFoundError(f"{self.path} lacks {missing[:3]} listed in {INDEX}; the dataset is incomplete: prepare it again into a new --out")

    def __len__(self) -> int:
        return int(sum(s["samples"] for s in self.shards))

    @property
    def fingerprint(self) -> str:
        return str(self.index["model"]["fingerprint"])

    @property
    def geometry(self) -> dict[str, int]:
        return dict(self.index["geometry"])

    @property
    def latent_frames(self) -> int:
        """Latent frames a clip of ``geometry`` holds under the index's ``latent`` record (a causal autoencoder's
        temporal factor t: 1 + (F - 1) / t; per frame: F / t), else F (an index written before the record existed,
        by a per-frame autoencoder). Derived from the geometry, so an edited frame count is caught by the shard check."""
        latent = self.index.get("latent") or {}
        frames, t = int(self.geometry["frames"]), int(latent.get("temporal_factor", 1))
        return (frames - 1) // t + 1 if latent.get("causal_first_frame") else frames // t

    def check_model(self, model: str | os.PathLike[str] | None = None, *, fingerprint: str | None = None, frames: int | None = None,
                    height: int | None = None, width: int | None = None) -> None:
        """Refuse data made for another model (its VAE / text encoder / tokenizer differ: give the model, or its
        ``model_fingerprint``) or another clip geometry."""
        if model is not None:
            fingerprint = model_fingerprint(model)[0]
            if fingerprint != self.fingerprint and model_fingerprint(model, LEGACY_PROVENANCE_KEYS)[0] == self.fingerprint:
                fingerprint = self.fingerprint  # a DATA prepared before the tokenizer's load-state keys were left out
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ValueError(f"{self.path} was prepared with model {self.index['model']['path']} (fingerprint {self.fingerprint[:12]}), "
                             f"not this one ({fingerprint[:12]}): prepare the data again with --model set to this model")
        want = {"frames": frames, "height": height, "width": width}
        wrong = {k: (self.geometry[k], v) for k, v in want.items() if v is not None and self.geometry[k] != v}
        if wrong:
            said = ", ".join(f"{k} {have} (wanted {v})" for k, (have, v) in wrong.items())
            raise ValueError(f"{self.path} holds clips of {said}: prepare it again with --frames / --height / --width of the model")

    def _checked_bytes(self, k: int) -> tuple[Path, bytes]:
        file = self.path / self.shards[k]["file"]
        data = file.read_bytes()
        if sha256_bytes(data) != self.shards[k]["sha256"]:
            raise ValueError(f"{file} does not match its sha256 in {INDEX} (modified or damaged since it was prepared); "
                             "prepare the dataset again into a new --out")
        return file, data

    def shard_captions(self, k: int) -> list[str]:
        """Shard ``k``'s captions from its header, its sha256 checked first (its tensors are not deserialised)."""
        file, data = self._checked_bytes(k)
        try:
            return [str(c) for c in shard_metadata(data).get("captions") or []]
        except ValueError as exc:
            raise ValueError(f"{file} is not a readable shard ({exc}); prepare the dataset again into a new --out") from None

    def load_shard(self, k: int) -> Shard:
        """Shard ``k`` of the index, its sha256 checked first."""
        entry = self.shards[k]
        file, data = self._checked_bytes(k)
        from safetensors.torch import load

        try:
            tensors, meta = load(data), shard_metadata(data)
        except Exception as exc:  # noqa: BLE001  safetensors' SafetensorError is no ValueError
            raise ValueError(f"{file} is not a readable shard ({' '.join(str(exc).split())}); prepare the dataset again into a new --out") from None
        shard = Shard(tensors.get("latents"), tensors.get("text"), list(meta.get("captions") or []), list(meta.get("sources") or []))
        self._check_shapes(file, entry, shard)
        return shard

    def _check_shapes(self, file: Path, entry: dict[str, Any], shard: Shard) -> None:
        """A shard must hold what the index says: ``samples`` clips of ``geometry``'s frames, latents [n, F, C, h, w]
        with h / w the geometry's over one downsampling factor, text [n, L, D], one caption and source per clip."""
        n, g = int(entry["samples"]), self.geometry
        lat, txt = shard.latents, shard.text
        problem = None
        if lat is None or txt is None:
            problem = "lacks its latents or text tensor"
        elif lat.ndim != 5 or txt.ndim != 3:
            problem = f"holds latents {list(lat.shape)} and text {list(txt.shape)}, not [n, F, C, h, w] and [n, L, D]"
        elif not lat.shape[0] == txt.shape[0] == len(shard.captions) == len(shard.sources) == n:
            problem = (f"holds {lat.shape[0]} latents, {txt.shape[0]} text rows and {len(shard.captions)} captions, "
                       f"but {INDEX} says {n} samples")
        elif lat.shape[1] != self.latent_frames:
            problem = (f"holds clips of {lat.shape[1]} frames, but {INDEX} says {g['frames']}" if self.latent_frames == g["frames"] else
                       f"holds clips of {lat.shape[1]} latent frames, but {INDEX} says {g['frames']} frames ({self.latent_frames} latent)")
        elif g["height"] % lat.shape[3] or g["width"] % lat.shape[4] or g["height"] // lat.shape[3] != g["width"] // lat.shape[4]:
            problem = f"holds latents of {lat.shape[3]}x{lat.shape[4]}, not one VAE factor below {INDEX}'s {g['height']}x{g['width']}"
        if problem:
            raise ValueError(f"{file} {problem}: the index and its shards disagree (edited since prepared); "
                             "prepare the dataset again into a new --out")


    def verify(self) -> int:
        """Check every shard's sha256 against the index (raises on the first mismatch); returns the samples checked."""
        for k in range(len(self.shards)):
            self.load_shard(k)
        return len(self)

    def shard_order(self, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The shards rank ``rank`` reads in ``epoch``: a disjoint share of a seeded per-epoch permutation."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if len(self.shards) < world_size:
            raise ValueError(f"{self.path} has {len(self.shards)} shards, fewer than the {world_size} ranks reading it: "
                             "prepare it again with a smaller --shard-size")
        perm = np.random.default_rng([seed, epoch]).permutation(len(self.shards))
        return [int(k) for k in perm[rank::world_size]]

    def batches(self, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0, start: Position | None = None,
                epochs: int | None = 1, drop_last: bool = False, mix: int = 1) -> Iterator[Batch]:
        """Batches of this rank's share, from ``start`` (default: the beginning) to the end of epoch ``epochs - 1``
        (None: forever). The rank's shards are read ``mix`` at a time (consecutive in its epoch order), their samples
        shuffled together: a shuffle buffer of ``mix`` shards, memory ``mix`` shards. The stream depends only on
        (seed, rank, world_size, mix), so a run resumed from a batch's ``position`` with the same arguments continues it
        exactly. A batch never spans two epochs; ``drop_last`` drops each epoch's short last batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if mix < 1:
            raise ValueError(f"mix must be >= 1 (shards shuffled together), got {mix}")
        start = start or Position()
        if start.shard % mix:
            raise ValueError(f"position {start.to_dict()} is not at the start of a group of {mix} shards: resume with the mix it was read with")
        epoch = start.epoch
        while epochs is None or epoch < epochs:
            yield from self._epoch(epoch, batch_size, rank, world_size, seed, start if epoch == start.epoch else Position(epoch), drop_last, mix)
            epoch += 1

    def _epoch(self, epoch: int, batch_size: int, rank: int, world_size: int, seed: int, start: Position,
               drop_last: bool, mix: int) -> Iterator[Batch]:
        order = self.shard_order(epoch, seed, rank, world_size)
        rows: list[tuple[torch.Tensor, torch.Tensor, str, str, tuple[int, int]]] = []
        for j in range(start.shard, len(order), mix):
            group = order[j : j + mix]
            shards = [self.load_shard(k) for k in group]
            members = [(k, shard, s) for k, shard in zip(group, shards) for s in range(len(shard.captions))]
            # One shard (mix 1): the permutation of its rows by rng(seed, epoch, shard), as before groups existed.
            perm = np.random.default_rng([seed, epoch, *group]).permutation(len(members))
            first = start.offset if j == start.shard else 0
            for i in range(first, len(perm)):
                k, shard, s = members[int(perm[i])]
                rows.append((shard.latents[s], shard.text[s], shard.captions[s], shard.sources[s], (k, s)))
                if len(rows) == batch_size:
                    after = Position(epoch, j, i + 1) if i + 1 < len(perm) else Position(epoch, j + mix, 0)
                    yield _batch(rows, after)
                    rows = []
        if rows and not drop_last:  # past the last group (a multiple of mix, so resuming from it starts the next epoch)
            yield _batch(rows, Position(epoch, -(-len(order) // mix) * mix, 0))


def _batch(rows: list[tuple[torch.Tensor, torch.Tensor, str, str, tuple[int, int]]], position: Position) -> Batch:
    return Batch(torch.stack([r[0] for r in rows]).float(), torch.stack([r[1] for r in rows]).float(), [r[2] for r in rows],
                 [r[3] for r in rows], position, [r[4] for r in rows])
