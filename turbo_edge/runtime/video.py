"""Write uint8 frames [F, H, W, 3] as GIF (Pillow) or MP4 (imageio-ffmpeg's bundled ffmpeg). No torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from turbo_edge.spec.outputs import check_output_file, staged_file

FORMATS = (".gif", ".mp4")
# The first bytes of each format, so --overwrite replaces only a video (never a user's other file under that name).
MAGIC = {".gif": ((0, b"GIF8"),), ".mp4": ((4, b"ftyp"),)}


def check_video_out(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output path before any work: a wrong suffix, a directory, or an existing file without ``overwrite``."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported video format {path.suffix!r} for {path}; use one of {FORMATS}")
    check_output_file(path, overwrite, MAGIC[path.suffix.lower()])
    return path


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so 32x32 clips are viewable (and MP4's macroblocks fit)."""
    if factor < 1:
        raise ValueError(f"scale factor must be >= 1, got {factor}")
    return frames.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else frames


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8, scale: int = 4, overwrite: bool = False) -> Path:
    """Write a video atomically (a temp file renamed over ``path``); an existing file is replaced only with
    ``overwrite`` and only when it is a video of the same format."""
    path = check_video_out(path, overwrite)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    frames = upscale(frames, scale)
    with staged_file(path, overwrite, MAGIC[path.suffix.lower()]) as tmp:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=False)
        else:
            import imageio.v2 as imageio

            # MP4 (yuv420p) needs even sizes; macro_block_size=1 avoids a silent resize.
            with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1, quality=8) as writer:
                for f in frames:
                    writer.append_data(f)
    return path
