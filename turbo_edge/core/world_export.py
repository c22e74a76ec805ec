"""``world export``: the synthetic world's clips as H.264 mp4 files plus ``metadata.jsonl`` (file_name, text), the
Hugging Face videofolder convention, so the world is one ``data prepare`` source among others. ``world.json`` records
what was written (split, seed, count, codec) and marks the folder as turbo-edge's for ``--overwrite``.

``world_data`` is what a distill or prune run without ``--data`` trains on: the world exported and prepared exactly
as a user's videos are, in the run directory, so every training stage reads one kind of data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from turbo_edge.core import world
from turbo_edge.core.video_io import h264_encoder, write_mp4
from turbo_edge.spec.configs.data import DataPrepareConfig, WorldExportConfig, flag_command
from turbo_edge.spec.outputs import staged_dir

MARKER = "world.json"


def export_world(cfg: WorldExportConfig, in_run_dir: bool = False) -> Path:
    """Write ``cfg.num`` clips of ``cfg.split`` to ``cfg.out`` atomically (a temp folder renamed into place)."""
    geometry = world.WorldConfig(lead_in=cfg.lead_in)
    with staged_dir(cfg.out, MARKER, cfg.overwrite, in_run_dir=in_run_dir) as tmp:
        rows = []
        for i in tqdm(range(cfg.num), desc="world export", unit="clip"):
            attrs, clip = world.sample(cfg.split, cfg.seed, i, geometry)
            name = f"{i:06d}.mp4"
            write_mp4(clip, tmp / name, fps=cfg.fps, crf=cfg.crf, pix_fmt=cfg.pix_fmt)
            rows.append(json.dumps({"file_name": name, "text": attrs.prompt}))
        (tmp / "metadata.jsonl").write_text("\n".join(rows) + "\n")
        record = {"kind": "world_export", "config": cfg.to_dict(), "frames": geometry.lead_in + geometry.frames, "height": geometry.size,
                  "width": geometry.size, "codec": h264_encoder(cfg.pix_fmt), "pix_fmt": cfg.pix_fmt, "reproduce": flag_command(cfg, "world export")}
        (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return Path(cfg.out)


WORLD_SHARD_CLIPS = 256  # data prepare's default --shard-size


def world_shard_size(clips: int) -> int:
    """Clips per shard of a world DATA: prepare's default, but never fewer than 8 shards, so up to 8 processes each
    read a disjoint share (a rank needs at least one shard)."""
    return max(1, min(WORLD_SHARD_CLIPS, clips // 8))


def world_data(model: str, clips: int, seed: int, work: str | Path, split: str = "train", lead_in: int | None = None) -> Path:
    """The world's first ``clips`` clips of ``split`` as a prepared DATA for ``model``: ``work/world`` (mp4 +
    metadata.jsonl, what ``turbo-edge world export`` writes) prepared into ``work/data`` (what ``turbo-edge data
    prepare`` writes). Both are reused when made with these arguments; an interrupted prepare resumes after its last
    shard. The equivalent commands are in the returned DATA's index (``command``) and ``work/world/world.json``."""
    from turbo_edge.core.dataset import prepare

    if lead_in is None:  # the model's own: a DiT card's lead-in frame, so its clips have the 1 + 4k frames it takes
        from turbo_edge.core.pipeline_io import resolve_model_path
        from turbo_edge.spec.card import read_card

        lead_in = read_card(resolve_model_path(model)).lead_in_frames
    work = Path(work)
    videos, data = work / "world", work / "data"
    export = WorldExportConfig(split=split, num=clips, seed=seed, out=str(videos), overwrite=True, lead_in=lead_in)
    try:
        made = json.loads((videos / MARKER).read_text())["config"]
    except (OSError, ValueError, KeyError):
        made = None
    if made != export.to_dict():
        export_world(export, in_run_dir=True)  # work/ is the calling stage's
        shutil.rmtree(data, ignore_errors=True)  # prepare keys a DATA by its arguments, not its source's contents
    prepare(DataPrepareConfig(source=str(videos), model=str(model), out=str(data), shard_size=world_shard_size(clips), overwrite=True))
    return data
