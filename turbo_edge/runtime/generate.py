"""``turbo-edge generate "prompt" --bundle B``: one clip from a bundle through the torch-free runtime.

``turbo_edge/cli.py`` routes ``generate --bundle`` here; neither imports torch on this path (a test checks it).
"""

from __future__ import annotations

import sys
import time
import warnings

from turbo_edge.runtime.pipeline import Pipeline, PromptTruncatedWarning
from turbo_edge.runtime.video import check_video_out, write_video
from turbo_edge.spec.configs import GenerateConfig
from turbo_edge.spec.errors import UNVERIFIED, UnverifiedBundleWarning


def run_generate(cfg: GenerateConfig) -> str:
    """Generate one clip and write it; returns the one-line report the CLI prints."""
    check_video_out(cfg.out, cfg.overwrite)  # before any work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedBundleWarning)
        if not cfg.verify:  # one plain line on stderr, not a Python warning with a source location
            print(f"turbo-edge generate: warning: {UNVERIFIED}", file=sys.stderr)
        pipe = Pipeline.from_bundle(cfg.bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, verify=cfg.verify)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptTruncatedWarning)
        result = pipe.run([cfg.prompt], steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance)
    seconds = time.perf_counter() - start
    clip = result.frames[0]
    fps = cfg.fps or int(pipe.bundle.video.get("fps", 8))
    path = write_video(clip, cfg.out, fps=fps, scale=cfg.scale, overwrite=cfg.overwrite)
    note = "; WARNING: prompt truncated to the text encoder's length" if result.truncated[0] else ""
    for w in caught:
        if not issubclass(w.category, PromptTruncatedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return (f"wrote {path} ({clip.shape[0]} frames, {clip.shape[1]}x{clip.shape[2]}, {result.steps} {pipe.bundle.sampler.kind} steps, "
            f"{cfg.backend} {cfg.precision}, {seconds * 1e3:.0f} ms){note}")
