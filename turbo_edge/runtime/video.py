"""Write uint8 frames [F, H, W, 3] as GIF (Pillow) or MP4 (imageio-ffmpeg's bundled ffmpeg). No torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = (".gif", ".mp4")


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so 32x32 clips are viewable (and MP4's macroblocks fit)."""
    if factor < 1:
        raise ValueError(f"scale factor must be >= 1, got {factor}")
    return frames.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else frames


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8, scale: int = 4) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported video format {path.suffix!r} for {path}; use one of {FORMATS}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    frames = upscale(frames, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=False)
    else:
        import imageio.v2 as imageio

        # MP4 (yuv420p) needs even sizes; macro_block_size=1 avoids a silent resize.
        with imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1, quality=8) as writer:
            for f in frames:
                writer.append_data(f)
    return path
