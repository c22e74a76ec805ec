"""Video sources for the data tests, made with FFmpeg's test patterns (imageio-ffmpeg's binary), not the world."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import tarfile
from pathlib import Path

import imageio_ffmpeg

# name -> (lavfi pattern, size, fps, seconds or None, codec args, frames or None)
CLIPS = {
    "bars.mp4": ("testsrc", "64x48", 10, 2, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], None),
    "tall.mp4": ("smptebars", "48x64", 25, 1, ["-c:v", "mpeg4", "-q:v", "5"], None),
    "fractal.webm": ("mandelbrot", "40x40", 15, 1, ["-c:v", "libvpx", "-b:v", "300k"], None),
    "wide.mp4": ("testsrc", "96x54", 30, 1, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], None),
    "short.mp4": ("testsrc", "32x32", 10, None, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 3),
}
GOOD = [("bars.mp4", "a red circle moving left"), ("tall.mp4", "a blue square moving up"),
        ("fractal.webm", "a green diamond staying still"), ("wide.mp4", "a white triangle moving right"),
        ("bars.mp4", "a yellow square moving down"), ("wide.mp4", "a purple circle moving left")]
# each bad reason exactly once
BAD = [("short.mp4", "a red square moving left", "too_few_frames"), ("corrupt.mp4", "a red circle moving up", "unreadable"),
       ("tall.mp4", "", "empty_caption"), ("gone.mp4", "a blue circle moving left", "missing"),
       ("bars.mp4", "a pink elephant dancing", "caption_vocabulary"), ("../src/bars.mp4", "a red circle moving left", "outside_source"),
       ("wide.mp4", "a red circle moving left " * 200, "caption_too_long"), ("x" * 5000 + ".mp4", "a red circle moving up", "too_large")]


def ffmpeg_clip(path: Path, pattern: str, size: str, fps: int, seconds: float | None, codec: list[str], frames: int | None = None) -> Path:
    length = ["-t", str(seconds)] if seconds else ["-frames:v", str(frames)]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"{pattern}=size={size}:rate={fps}", *length, *codec, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def make_videos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (pattern, size, fps, seconds, codec, frames) in CLIPS.items():
        ffmpeg_clip(folder / name, pattern, size, fps, seconds, codec, frames)
    (folder / "corrupt.mp4").write_bytes(bytes(range(256)) * 64)  # not a video: bytes named .mp4
    return folder


def write_jsonl(folder: Path, rows: list[tuple[str, str]]) -> Path:
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f, "text": t}) + "\n" for f, t in rows))
    return folder


def write_csv(path: Path, rows: list[tuple[str, str]], video: str = "video_path", caption: str = "name") -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["videoid", video, "duration", caption])
        for i, (f, t) in enumerate(rows):
            writer.writerow([i, f, "PT00H00M01S", t])
    return path


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
