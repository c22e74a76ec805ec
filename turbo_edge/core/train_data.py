"""A training batch source: a prepared DATA directory (``turbo-edge data prepare``), the user's or the synthetic
world's (exported as mp4 and prepared like any source when no ``--data`` is given).

The distiller and the pruner's recovery loop ask one question per step: "rank ``r``'s batch for step ``k``". A DATA
answers it by streaming its rank's disjoint share of the shards (``PreparedData.batches``), so a resumed run must
know where every rank stood: checkpoints record one ``Position`` per rank. Every rank takes one full batch per step (each epoch's short tail is dropped), so the position of any
rank after ``k`` steps is a pure function of the index's shard sizes and (seed, rank, world size); rank 0 writes
all of them without talking to the others, and each rank resumes from its own.

``loop.read_log`` makes every rank write the (shard, row) ids of each batch it read (``log_read``);
``audit_read_log`` checks those logs against the shard sizes: ranks disjoint within an epoch, no sample read twice
in an epoch, each rank inside its own shards, and every finished epoch covered but for each rank's dropped tail.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from turbo_edge.core.checkpoint import log_jsonl
from turbo_edge.core.pipeline_io import resolve_model_path
from turbo_edge.core.prepared import Position, PreparedData
from turbo_edge.spec.card import read_card

STATE_KEY = "data"  # the checkpoint state.json key
READ_LOG = "read_log"  # OUT/read_log/rank<R>.jsonl: one line per step, {"step", "epoch", "ids": [[shard, row], ...]}


@dataclasses.dataclass
class TrainBatch:
    x0: torch.Tensor  # float32 [B, C, F, h, w]: scaled VAE latents, the distiller's clean sample
    prompts: list[str]
    text: torch.Tensor  # float32 [B, L, D] the frozen text encoder's output, as the DATA stores it
    ids: list[tuple[int, int]] | None = None  # the DATA's (shard, row) of each clip (None from ``head``)
    epoch: int | None = None  # the DATA epoch the batch belongs to


def _bcfhw(latents_bfchw: torch.Tensor) -> torch.Tensor:
    return latents_bfchw.float().permute(0, 2, 1, 3, 4).contiguous()


def open_source(data: str | None, model: str | os.PathLike[str], seed: int, world_clips: int, work: str | os.PathLike[str],
                mix: int = 1) -> DataSource:
    """The run's batch source: ``data``, checked against ``model``'s VAE / text encoder / tokenizer and clip geometry
    (read from its files, so a mismatch is refused before any weights load), or, when ``data`` is empty, the world's
    first ``world_clips`` training clips exported as mp4 and prepared for ``model`` under ``work``
    (``core.world_export.world_data``): one path for the world and for a user's videos. Under several processes,
    call it on the main process first (the world is prepared once). ``mix``: shards read and shuffled together."""
    if not data:
        from turbo_edge.core.world_export import world_data

        data = str(world_data(str(model), world_clips, seed, work))
    return DataSource(load_checked(data, model), seed=seed, mix=mix)


def load_checked(data: str | os.PathLike[str], model: str | os.PathLike[str], flag: str = "--data") -> PreparedData:
    """``PreparedData(data)``, refused in one line naming ``flag`` and the command that makes one for ``model``."""
    try:
        prepared = PreparedData(data)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{flag}: {exc}") from None
    card = read_card(resolve_model_path(model))
    try:
        prepared.check_model(model, frames=card.frames, height=card.height, width=card.width)
    except ValueError as exc:
        source = prepared.index.get("source", {}).get("path", "SOURCE")
        raise ValueError(f"{flag} {data} does not fit {model}: {str(exc).rpartition(': ')[0]}; make one for it with "
                         f"`turbo-edge data prepare --source {source} --model {model} --out NEW_DATA`") from None
    return prepared


class DataSource:
    """A prepared DATA: each rank streams its disjoint share of the shards, ``mix`` shards shuffled together at a time,
    one full batch per step."""

    def __init__(self, data: PreparedData, seed: int, mix: int = 1) -> None:
        if mix < 1:
            raise ValueError(f"mix_shards must be >= 1, got {mix}")
        self.data, self.seed, self.mix = data, seed, mix

    def __len__(self) -> int:
        return len(self.data)

    def identity(self) -> dict[str, Any]:
        return {"run_id": self.data.index.get("run_id"), "fingerprint": self.data.fingerprint, "samples": len(self.data)}

    def head(self, n: int) -> TrainBatch:
        """The first ``n`` clips in index order (shard 0 first), with their stored text embeddings."""
        if n > len(self.data):
            raise ValueError(f"--data {self.data.path} holds {len(self.data)} clips, fewer than the {n} asked for "
                             "(importance_clips): lower it or prepare more clips")
        lat, text, captions = [], [], []
        for k in range(len(self.data.shards)):
            shard = self.data.load_shard(k)
            take = min(n - len(captions), len(shard.captions))
            lat.append(shard.latents[:take])
            text.append(shard.text[:take])
            captions.extend(shard.captions[:take])
            if len(captions) == n:
                break
        return TrainBatch(_bcfhw(torch.cat(lat)), captions, torch.cat(text).float())

    def check_batch(self, world_size: int, batch: int) -> None:
        """Refuse a DATA whose smallest possible per-rank epoch holds less than one batch (it would yield nothing)."""
        sizes = sorted(int(s["samples"]) for s in self.data.shards)
        if len(sizes) < world_size:
            raise ValueError(f"--data {self.data.path} has {len(sizes)} shards, fewer than the {world_size} processes reading it: "
                             "prepare it again with a smaller --shard-size")
        least = sum(sizes[: len(sizes) // world_size])
        if least < batch:
            raise ValueError(f"--data {self.data.path} gives a process as few as {least} clips per epoch, under one batch of {batch} "
                             f"per process: lower --batch or prepare more clips")

    def positions_after(self, steps: int, world_size: int, batch: int) -> list[Position]:
        """Every rank's ``Position`` after ``steps`` batches of ``batch`` (short epoch tails dropped), from the shard
        sizes alone: what ``batches(...)``'s ``steps``-th batch carries on each rank."""
        return [self._position_after(steps, rank, world_size, batch) for rank in range(world_size)]

    def _position_after(self, steps: int, rank: int, world_size: int, batch: int) -> Position:
        if steps == 0:
            return Position()
        epoch = 0
        while True:
            order = self.data.shard_order(epoch, self.seed, rank, world_size)
            groups = [sum(int(self.data.shards[k]["samples"]) for k in order[j : j + self.mix]) for j in range(0, len(order), self.mix)]
            per_epoch = sum(groups) // batch
            if steps <= per_epoch:
                break
            steps -= per_epoch
            epoch += 1
        last = steps * batch - 1  # the last sample consumed, counted through the epoch's groups of shards in order
        for g, size in enumerate(groups):
            if last < size:
                j = g * self.mix
                return Position(epoch, j, last + 1) if last + 1 < size else Position(epoch, j + self.mix, 0)
            last -= size
        raise AssertionError("unreachable: the batch lies inside the epoch")

    def reader(self, rank: int, world_size: int, batch: int, resume: dict[str, Any] | None = None) -> DataReader:
        self.check_batch(world_size, batch)
        start = Position()
        if resume and "step" in resume:
            state = resume.get(STATE_KEY)
            if state is None:
                raise ValueError(f"the checkpoint records no data positions (written before runs read the world as a prepared "
                                 f"DATA), so it cannot resume on {self.data.path}: use a new --out")
            mine = {"run_id": self.identity()["run_id"], "world_size": world_size, "batch": batch, "seed": self.seed, "mix_shards": self.mix}
            theirs = {k: state.get(k, 1 if k == "mix_shards" else None) for k in mine}  # no mix_shards: written before it existed
            if theirs != mine:
                diff = ", ".join(f"{k} {theirs[k]} (now {mine[k]})" for k in mine if theirs[k] != mine[k])
                raise ValueError(f"the checkpoint read its data differently ({diff}): resume with the same --data, process count, "
                                 "batch and mix_shards, or use a new --out")
            start = Position.from_dict(state["positions"][rank])
        return DataReader(self, rank, world_size, batch, start)


class DataReader:
    def __init__(self, source: DataSource, rank: int, world_size: int, batch: int, start: Position) -> None:
        self.source, self.world_size, self.batch = source, world_size, batch
        self._it: Iterator[Any] = source.data.batches(batch, rank=rank, world_size=world_size, seed=source.seed, start=start,
                                                      epochs=None, drop_last=True, mix=source.mix)

    def next(self, step: int) -> TrainBatch:
        b = next(self._it)
        return TrainBatch(_bcfhw(b.latents), b.captions, b.text.float(), b.ids, b.position.epoch)

    def checkpoint_state(self, steps_done: int) -> dict[str, Any]:
        """What a checkpoint after ``steps_done`` steps records: the DATA's identity and every rank's position."""
        positions = self.source.positions_after(steps_done, self.world_size, self.batch)
        return {STATE_KEY: {"path": str(Path(self.source.data.path).resolve()), **self.source.identity(), "world_size": self.world_size,
                            "batch": self.batch, "seed": self.source.seed, "mix_shards": self.source.mix,
                            "positions": [p.to_dict() for p in positions]}}


def read_log_path(out: str | os.PathLike[str], rank: int) -> Path:
    return Path(out) / READ_LOG / f"rank{rank}.jsonl"


def log_read(out: str | os.PathLike[str], rank: int, step: int, batch: TrainBatch) -> None:
    """Append what rank ``rank`` read at (1-based) ``step`` to its read log (``loop.read_log``)."""
    log_jsonl(read_log_path(out, rank), {"step": step, "epoch": batch.epoch, "ids": [list(i) for i in batch.ids]})


def load_read_log(out: str | os.PathLike[str]) -> list[list[dict[str, Any]]]:
    """Every rank's read log, in rank order, one record per step: a resumed run re-reads the steps after its
    checkpoint and appends them again, and the last record of a step is the one its weights were trained on."""
    files = sorted((Path(out) / READ_LOG).glob("rank*.jsonl"), key=lambda f: int(f.stem[len("rank"):]))
    if [int(f.stem[len("rank"):]) for f in files] != list(range(len(files))):
        raise ValueError(f"{Path(out) / READ_LOG} holds {[f.name for f in files]}: expected rank0.jsonl .. rank<N-1>.jsonl")
    logs = []
    for f in files:
        by_step = {r["step"]: r for r in (json.loads(line) for line in f.read_text().splitlines() if line.strip())}
        logs.append([by_step[k] for k in sorted(by_step)])
    return logs


def audit_read_log(source: DataSource, logs: list[list[dict[str, Any]]], batch: int) -> dict[str, Any]:
    """Check ``logs`` (``load_read_log``: one list per rank, ``batch`` samples per record) against the DATA's shards.

    Per epoch: ``repeats`` (reads of a sample already read in that epoch, by any rank), ``shared_between_ranks``
    (samples more than one rank read), ``outside_own_shards`` (reads of ids not in the rank's own shards that
    epoch), and, for an epoch every rank finished (``samples // batch`` batches of its shards' samples), ``expected``
    (the epoch's samples less each rank's dropped tail, ``dropped_tail``) and ``missing`` (expected, never read)."""
    world_size = len(logs)
    epochs = sorted({int(r["epoch"]) for rank_log in logs for r in rank_log})
    rows = []
    for epoch in epochs:
        per_rank: list[list[tuple[int, int]]] = []
        inside: set[tuple[int, int]] = set()
        outside, finished, expected, dropped = 0, True, 0, 0
        for rank, rank_log in enumerate(logs):
            own = set(source.data.shard_order(epoch, source.seed, rank, world_size))
            samples = sum(int(source.data.shards[k]["samples"]) for k in own)
            records = [r for r in rank_log if int(r["epoch"]) == epoch]
            wrong = [r["step"] for r in records if len(r["ids"]) != batch]
            if wrong:
                raise ValueError(f"rank {rank} read other than the batch of {batch} samples at steps {wrong[:5]}")
            per_rank.append([(int(k), int(i)) for r in records for k, i in r["ids"]])
            mine = {i for i in per_rank[-1] if i[0] in own and 0 <= i[1] < int(source.data.shards[i[0]]["samples"])}
            outside += sum(i not in mine for i in per_rank[-1])
            inside |= mine
            finished &= len(records) == samples // batch
            expected += samples - samples % batch
            dropped += samples % batch
        every = [i for ids in per_rank for i in ids]
        distinct = set(every)
        owners = Counter(i for ids in per_rank for i in set(ids))
        row = {"epoch": epoch, "finished": finished, "read": len(every), "distinct": len(distinct), "repeats": len(every) - len(distinct),
               "shared_between_ranks": sum(n > 1 for n in owners.values()), "outside_own_shards": outside}
        if finished:
            row.update(expected=expected, dropped_tail=dropped, missing=expected - len(inside))
        rows.append(row)
    return {"world_size": world_size, "batch": batch, "samples": len(source), "epochs": rows,
            "finished_epochs": sum(r["finished"] for r in rows),
            "no_repeats": all(r["repeats"] == 0 for r in rows),
            "ranks_disjoint": all(r["shared_between_ranks"] == 0 for r in rows),
            "ranks_in_own_shards": all(r["outside_own_shards"] == 0 for r in rows),
            "finished_epochs_covered": all(r["missing"] == 0 for r in rows if r["finished"])}
