"""``world export``: the synthetic world's clips as H.264 mp4 files plus ``metadata.jsonl`` (file_name, text), the
Hugging Face videofolder convention, so the world is one ``data prepare`` source among others. ``world.json`` records
what was written (split, seed, count, codec) and marks the folder as turbo-edge's for ``--overwrite``."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from turbo_edge.core import world
from turbo_edge.core.video_io import write_mp4
from turbo_edge.spec.configs.data import WorldExportConfig, flag_command
from turbo_edge.spec.outputs import staged_dir

MARKER = "world.json"


def export_world(cfg: WorldExportConfig) -> Path:
    """Write ``cfg.num`` clips of ``cfg.split`` to ``cfg.out`` atomically (a temp folder renamed into place)."""
    geometry = world.WorldConfig()
    with staged_dir(cfg.out, MARKER, cfg.overwrite) as tmp:
        rows = []
        for i in tqdm(range(cfg.num), desc="world export", unit="clip"):
            attrs, clip = world.sample(cfg.split, cfg.seed, i, geometry)
            name = f"{i:06d}.mp4"
            write_mp4(clip, tmp / name, fps=cfg.fps, crf=cfg.crf)
            rows.append(json.dumps({"file_name": name, "text": attrs.prompt}))
        (tmp / "metadata.jsonl").write_text("\n".join(rows) + "\n")
        record = {"kind": "world_export", "config": cfg.to_dict(), "frames": geometry.frames, "height": geometry.size,
                  "width": geometry.size, "codec": "libx264", "pix_fmt": "yuv420p", "reproduce": flag_command(cfg, "world export")}
        (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return Path(cfg.out)
