"""Reference clips for ``eval --reference``: a prepared dataset's source videos, or a folder of videos.

A prepared dataset (``data prepare``'s DATA) holds VAE latents, but its index records the source it was made from,
the geometry and the frame sampling, and each shard names its rows' videos. The reference is those videos decoded
again with the same geometry and sampling (PyAV, ``video_io.read_clip``), not the latents decoded by a VAE: the real
frames carry no VAE reconstruction error (which would otherwise sit in the reference as well as in the clips under
test), and any model (a bundle too) is compared against the same frames. A DATA whose source has moved is refused.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.core import sources, video_io
from turbo_edge.core.prepared import INDEX, PreparedData, shard_metadata

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".gif")


def load_reference(path: str | Path, frames: int, height: int, width: int, limit: int) -> tuple[np.ndarray, dict[str, Any]]:
    """uint8 clips [M, F, H, W, 3] (M <= ``limit``) and a record of where they came from. A folder of videos is read at
    the given geometry (the generated clips'); a prepared dataset at its own."""
    root = Path(path)
    if (root / INDEX).is_file():
        return _from_prepared(root, limit)
    if root.is_dir():
        return _from_folder(root, frames, height, width, limit)
    raise FileNotFoundError(f"--reference {root} does not exist: give a prepared dataset (turbo-edge data prepare) or a folder of videos")


def _from_prepared(root: Path, limit: int) -> tuple[np.ndarray, dict[str, Any]]:
    data = PreparedData(root)
    index = data.index
    source, config = str(index["source"]["path"]), index.get("config") or {}
    if index["source"].get("kind") == "student-samples":  # decoder samples: latents a student drew, no videos behind them
        raise ValueError(f"--reference {root} holds a student's samples (turbo-edge decoder samples), not videos: give the videos, or a "
                         "dataset prepared from them")
    try:
        sources.describe(source)
    except (FileNotFoundError, ValueError):
        raise FileNotFoundError(f"--reference {root} was prepared from {source}, which is not there now (FD compares against those source "
                                "videos): run from the directory it was prepared in, or pass the video folder itself as --reference") from None
    wanted: Counter[str] = Counter()
    for entry in data.shards:
        wanted.update(shard_metadata((root / entry["file"]).read_bytes())["sources"])
    geometry, sampling = data.geometry, index["sampling"]
    clips, bad = [], Counter()
    for item in sources.iter_items(source, config.get("video_column"), config.get("caption_column")):
        if len(clips) == limit:
            break
        if wanted[item.source] <= 0 or item.video is None:
            continue
        wanted[item.source] -= 1
        try:
            clips.append(video_io.read_clip(item.video, geometry["frames"], geometry["height"], geometry["width"],
                                            fps=sampling.get("fps"), stride=sampling.get("stride") or 1))
        except video_io.BadSample as exc:
            bad[exc.reason] += 1
    if not clips:
        raise ValueError(f"--reference {root}: none of its source videos in {source} decodes now ({dict(bad) or 'none found'}); "
                         "pass a folder of videos as --reference")
    return np.stack(clips), {"path": str(root), "kind": "prepared data: its source videos, decoded with the data's geometry and sampling",
                             "source": source, "videos": len(clips), "skipped": dict(bad)}


def _from_folder(root: Path, frames: int, height: int, width: int, limit: int) -> tuple[np.ndarray, dict[str, Any]]:
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"--reference {root} holds no videos ({', '.join(VIDEO_SUFFIXES)}): give a folder of videos or a prepared dataset")
    clips, bad = [], Counter()
    for file in files:
        if len(clips) == limit:
            break
        try:
            clips.append(video_io.read_clip(file, frames, height, width))
        except video_io.BadSample as exc:
            bad[exc.reason] += 1
    if not clips:
        raise ValueError(f"--reference {root}: none of its {len(files)} videos gives {frames} frames ({dict(bad)}); give longer videos")
    return np.stack(clips), {"path": str(root), "kind": f"video folder: the first {frames} frames of each, resized and centre-cropped to "
                             f"{height}x{width}", "videos": len(clips), "skipped": dict(bad)}
