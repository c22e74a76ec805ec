"""Video decoding for ``data prepare`` and mp4 writing for ``world export``, with PyAV (its own FFmpeg, no torch).

A clip is read frame by frame and stops decoding as soon as it has the frames it needs; frames are chosen by
timestamps (resampled to ``fps``) or by ``stride``, then each chosen frame is resized so its shorter side fits the
target (swscale's area filter when shrinking) and centre-cropped: ``uint8[F, H, W, 3]`` RGB, the world's layout.
A file that cannot be used raises ``BadSample`` with a reason ``data prepare`` counts; it never stops a run.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np

from turbo_edge.spec.configs.data import LIMITS

T = TypeVar("T")
# Why a sample was skipped, in the order the index lists them.
REASONS = ("missing", "unreadable", "too_few_frames", "empty_caption", "caption_vocabulary", "outside_source", "too_large",
           "caption_too_long")
_TIME_EPS = 1e-6  # seconds: a target time equal to a frame's start (up to rounding) belongs to that frame


class BadSample(Exception):
    """A sample ``data prepare`` skips; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown bad-sample reason {reason!r}; expected one of {REASONS}")
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def pick_by_stride(frames: Iterable[T], stride: int, count: int, convert: Callable[[T], Any] | None = None) -> list[Any]:
    """Frames 0, stride, 2 * stride, ... up to ``count`` of them; stops reading once it has them. ``convert`` maps a
    frame as soon as it is picked (``read_clip`` resizes there, so a clip never holds its frames at full size)."""
    picked: list[Any] = []
    for i, frame in enumerate(frames):
        if i % stride == 0:
            picked.append(convert(frame) if convert else frame)
            if len(picked) == count:
                break
    return picked


def pick_by_time(timed: Iterable[tuple[float, float, T]], fps: float, count: int, convert: Callable[[T], Any] | None = None) -> list[Any]:
    """Resample to ``fps``: target k is at ``t0 + k / fps`` (t0 the first frame's time) and gets the frame on screen
    then, i.e. the last one starting at or before it. ``timed`` yields (start, duration, frame) in presentation order;
    the last frame stays on screen for its duration. A frame is repeated when ``fps`` exceeds the video's rate.
    ``convert`` maps a frame once, when it is first picked; the frame itself is not kept."""
    picked: list[Any] = []
    t0 = None
    prev: tuple[float, float, T] | None = None
    prev_converted: list[Any] = []  # prev's converted form, once it is picked

    def take(frame: T) -> None:
        if not prev_converted:
            prev_converted.append(convert(frame) if convert else frame)
        picked.append(prev_converted[0])

    for start, duration, frame in timed:
        if t0 is None:
            t0 = start
        while prev is not None and len(picked) < count and t0 + len(picked) / fps < start - _TIME_EPS:
            take(prev[2])  # the previous frame is on screen at this target
        if len(picked) == count:
            return picked
        prev = (start, duration, frame)
        prev_converted.clear()
    if prev is not None and t0 is not None:
        end = prev[0] + prev[1]
        while len(picked) < count and t0 + len(picked) / fps < end - _TIME_EPS:
            take(prev[2])
    return picked


def resize_crop(frame: av.VideoFrame, height: int, width: int) -> np.ndarray:
    """Scale so the frame covers ``height`` x ``width`` (the shorter side fits), then cut the centre: uint8[H, W, 3]."""
    scale = max(width / frame.width, height / frame.height)
    new_w, new_h = max(width, round(frame.width * scale)), max(height, round(frame.height * scale))
    interpolation = "AREA" if scale < 1 else "BICUBIC"
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation=interpolation).to_ndarray()
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def _timed_frames(container: Any, stream: Any) -> Iterator[tuple[float, float, av.VideoFrame]]:
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    for i, frame in enumerate(container.decode(stream)):
        start = float(frame.time) if frame.time is not None else i / rate
        duration = float(frame.duration * stream.time_base) if frame.duration and stream.time_base else 1.0 / rate
        yield start, duration, frame


def read_clip(src: str | Path | bytes, frames: int, height: int, width: int, fps: float | None = None, stride: int = 1) -> np.ndarray:
    """Decode ``frames`` frames of a video file (a path, or its bytes) as uint8[F, H, W, 3]; ``BadSample`` if it
    cannot be opened or decoded, or is too short."""
    name = "<bytes>" if isinstance(src, bytes) else str(src)
    try:
        with av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src), mode="r") as container:
            if not container.streams.video:
                raise BadSample("unreadable", f"{name} has no video stream")
            stream = container.streams.video[0]
            width_px, height_px = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            if width_px * height_px > LIMITS["frame_pixels"]:  # refused before a frame decodes: one would take ~1.5 B/pixel
                raise BadSample("too_large", f"{name} has {width_px}x{height_px} frames, over data prepare's limit of "
                                             f"{LIMITS['frame_pixels']:,} pixels a frame; scale it down first (ffmpeg -vf scale=-2:1080)")
            stream.thread_type = "AUTO"
            resize = lambda f: resize_crop(f, height, width)  # noqa: E731  each frame as it is picked, never all at full size
            if fps is not None:
                picked = pick_by_time(_timed_frames(container, stream), fps, frames, resize)
            else:
                picked = pick_by_stride(container.decode(stream), stride, frames, resize)
            if len(picked) < frames:
                how = f"at {fps:g} fps" if fps is not None else f"with stride {stride}"
                raise BadSample("too_few_frames", f"{name} gives {len(picked)} of {frames} frames {how}")
            return np.stack(picked)
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:  # ValueError: e.g. a pixel format swscale refuses
        raise BadSample("unreadable", f"{name}: {' '.join(str(exc).split())}") from None


PIX_FMTS = ("yuv420p", "yuv444p", "rgb24")


def h264_encoder(pix_fmt: str) -> str:
    """x264's encoder for ``pix_fmt``: libx264rgb codes RGB planes as they are, libx264 codes YUV."""
    return "libx264rgb" if pix_fmt == "rgb24" else "libx264"


def write_mp4(clip: np.ndarray, path: str | Path, fps: int = 8, crf: int = 10, pix_fmt: str = "yuv420p") -> Path:
    """Encode uint8[F, H, W, 3] RGB as H.264 at constant quality ``crf``: ``yuv420p`` (chroma at half the width and
    height; what every player reads), ``yuv444p`` (full-resolution chroma, H.264's High 4:4:4 profile) or ``rgb24``
    (x264's RGB encoder, libx264rgb: no colour conversion, so ``crf=0`` gives back every pixel exactly)."""
    if pix_fmt not in PIX_FMTS:
        raise ValueError(f"pix_fmt must be one of {list(PIX_FMTS)}, got {pix_fmt!r}")
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError(f"a clip is uint8 [frames, height, width, 3], got {clip.dtype} {list(clip.shape)}")
    height, width = clip.shape[1:3]
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(h264_encoder(pix_fmt), rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        # mbtree off: with it, x264 wrote different bytes for the same small clip in the same process once torch had
        # loaded a model (5 different files in 6 encodes of one 32x32 clip; none in 10 without it, whatever the
        # thread count), and a training source must be a pure function of the world.
        stream.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
        for i, image in enumerate(clip):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return Path(path)
