"""``turbo-edge generate "prompt" --bundle B``: one clip from a bundle through the torch-free runtime (``--prompts FILE``:
one clip per line into a directory).

``turbo_edge/cli.py`` routes ``generate --bundle`` here; neither imports torch on this path (a test checks it).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.runtime.pipeline import Pipeline, PromptTruncatedWarning
from turbo_edge.runtime.video import check_video_out, write_video
from turbo_edge.spec.configs import GenerateConfig
from turbo_edge.spec.errors import UNVERIFIED, UnverifiedBundleWarning
from turbo_edge.spec.outputs import check_replaceable, staged_dir
from turbo_edge.spec.prompt_file import read_prompt_lines
from turbo_edge.spec.sampler import DEFAULT_FPS

CLIPS_INDEX = "clips.json"  # the marker of a --prompts output directory (spec.outputs.KINDS)


def check_clips_out(cfg: GenerateConfig) -> list[tuple[int, str]] | None:
    """Before any work: the prompts of ``--prompts`` with their line numbers (None without it) and a writable ``--out``
    for them."""
    if not cfg.prompts:
        check_video_out(cfg.out, cfg.overwrite)
        return None
    prompts, _ = read_prompt_lines(cfg.prompts)
    check_replaceable(Path(cfg.out), CLIPS_INDEX, cfg.overwrite)
    return prompts


def refused_line(cfg: GenerateConfig, line: int, prompt: str, exc: Exception) -> ValueError:
    """A prompt of ``--prompts`` the model refuses, named by its line in the file (as eval and the file reader name it)."""
    return ValueError(f"--prompts file {cfg.prompts}, line {line} ({prompt[:60]!r}): {exc}")


def write_clips(cfg: GenerateConfig, prompts: list[tuple[int, str]], make_clip: Callable[[str], np.ndarray], fps: int,
                about: dict[str, Any]) -> Path:
    """``--prompts``: one clip per (line, prompt) (``make_clip(prompt)``, each seeded with ``cfg.seed`` as a single call
    is) into the directory ``cfg.out``, ``000.gif`` ... in the file's order, and ``clips.json`` listing file -> prompt;
    the directory appears complete or not at all."""
    width = max(3, len(str(len(prompts) - 1)))
    with staged_dir(cfg.out, CLIPS_INDEX, cfg.overwrite) as tmp:
        rows = []
        for i, (line, prompt) in enumerate(prompts):
            name = f"{i:0{width}d}.{cfg.clip_format}"
            try:
                clip = make_clip(prompt)
            except ValueError as exc:  # the model refuses this prompt (e.g. words outside its vocabulary): say which line
                raise refused_line(cfg, line, prompt, exc) from None
            write_video(clip, tmp / name, fps=fps, scale=cfg.scale)
            rows.append({"file": name, "prompt": prompt})
        index = {"format": "turbo-edge-clips", "prompts_file": str(cfg.prompts), "seed": cfg.seed, "fps": fps, **about, "clips": rows}
        (tmp / CLIPS_INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return Path(cfg.out)


def run_generate(cfg: GenerateConfig) -> str:
    """Generate one clip (or one per ``--prompts`` line) and write it; returns the one-line report the CLI prints."""
    prompts = check_clips_out(cfg)  # before any work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedBundleWarning)
        if not cfg.verify:  # one plain line on stderr, not a Python warning with a source location
            print(f"turbo-edge generate: warning: {UNVERIFIED}", file=sys.stderr)
        pipe = Pipeline.from_bundle(cfg.bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, verify=cfg.verify,
                                    decoder=cfg.decoder)
    if prompts is not None:
        return _run_many(cfg, pipe, prompts)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptTruncatedWarning)
        result = pipe.run([cfg.prompt], steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance, frames=cfg.frames, height=cfg.height, width=cfg.width)
    seconds = time.perf_counter() - start
    clip = result.frames[0]
    fps = cfg.fps or int(pipe.bundle.video.get("fps", DEFAULT_FPS))
    path = write_video(clip, cfg.out, fps=fps, scale=cfg.scale, overwrite=cfg.overwrite)
    note = "; WARNING: prompt truncated to the text encoder's length" if result.truncated[0] else ""
    for w in caught:
        if not issubclass(w.category, PromptTruncatedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return (f"wrote {path} ({clip.shape[0]} frames, {clip.shape[1]}x{clip.shape[2]}, {result.steps} {pipe.bundle.sampler.kind} steps, "
            f"{cfg.backend} {cfg.precision}, {seconds * 1e3:.0f} ms){note}")


def _run_many(cfg: GenerateConfig, pipe: Pipeline, prompts: list[tuple[int, str]]) -> str:
    for line, prompt in prompts:  # every prompt the bundle refuses, before the first clip is made
        try:
            pipe.check_prompt(prompt)
        except ValueError as exc:
            raise refused_line(cfg, line, prompt, exc) from None
    truncated = []
    start = time.perf_counter()

    def make_clip(prompt: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptTruncatedWarning)  # counted in the report line instead
            result = pipe.run([prompt], steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance, frames=cfg.frames, height=cfg.height,
                              width=cfg.width)
        if result.truncated[0]:
            truncated.append(prompt)
        return result.frames[0]

    fps = cfg.fps or int(pipe.bundle.video.get("fps", DEFAULT_FPS))
    about = {"bundle": str(cfg.bundle), "backend": cfg.backend, "precision": cfg.precision, "steps": cfg.steps or pipe.bundle.sampler.default_steps}
    out = write_clips(cfg, prompts, make_clip, fps, about)
    note = f"; WARNING: {len(truncated)} prompts truncated to the text encoder's length" if truncated else ""
    return (f"wrote {len(prompts)} clips to {out} ({cfg.clip_format}, {cfg.backend} {cfg.precision}, "
            f"{(time.perf_counter() - start) * 1e3 / len(prompts):.0f} ms per clip){note}")
