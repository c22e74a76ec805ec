"""``turbo-edge eval``: generate clips for a split's prompts and score them with the held-out evaluator.

Clip sources register by name: ``groundtruth`` and ``noise`` (the evaluator's own sanity anchors) and
model kinds read from a model directory's ``turbo_edge.json`` (``teacher`` here; later stages add theirs).
A bundle directory (``turbo-edge export``'s, with ``manifest.json``) runs through the torch-free runtime on
``--backend`` at ``--precision``, so an int8 bundle is scored by the same evaluator as the model it came from.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.core import world
from turbo_edge.core.evaluator import Evaluator
from turbo_edge.core.pipeline_io import check_layout, load_teacher, resolve_model_path
from turbo_edge.core.sampling import generate_teacher
from turbo_edge.core.student_sampling import generate_student
from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.runtime.video import write_video
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import EvalConfig

ClipSource = Callable[["EvalConfig", list[world.Attributes]], np.ndarray]
SOURCES: dict[str, ClipSource] = {}
MODEL_KINDS: dict[str, ClipSource] = {}


def register_source(name: str) -> Callable[[ClipSource], ClipSource]:
    def deco(fn: ClipSource) -> ClipSource:
        SOURCES[name] = fn
        return fn

    return deco


def register_model_kind(kind: str) -> Callable[[ClipSource], ClipSource]:
    def deco(fn: ClipSource) -> ClipSource:
        MODEL_KINDS[kind] = fn
        return fn

    return deco


@register_source("groundtruth")
def _groundtruth(cfg: EvalConfig, attrs: list[world.Attributes]) -> np.ndarray:
    rng_base = 10_000 + cfg.seed
    return np.stack([world.render_clip(a, np.random.default_rng([rng_base, i])) for i, a in enumerate(attrs)])


@register_source("noise")
def _noise(cfg: EvalConfig, attrs: list[world.Attributes]) -> np.ndarray:
    wc = world.WorldConfig()
    rng = np.random.default_rng(cfg.seed)
    return rng.integers(0, 256, size=(len(attrs), wc.frames, wc.size, wc.size, 3), dtype=np.uint8)


@register_model_kind("teacher")
def _teacher(cfg: EvalConfig, attrs: list[world.Attributes]) -> np.ndarray:

    model = load_teacher(cfg.model)
    guidance = cfg.guidance if cfg.guidance is not None else float(model.card.default_guidance)
    return generate_teacher(
        model, [a.prompt for a in attrs], steps=cfg.steps, guidance=guidance, seed=cfg.seed,
        batch_size=cfg.batch_size, progress=True,
    )


@register_model_kind("pruned")
@register_model_kind("student")
def _student(cfg: EvalConfig, attrs: list[world.Attributes]) -> np.ndarray:

    model = load_teacher(cfg.model)
    return generate_student(model, [a.prompt for a in attrs], steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed, batch_size=cfg.batch_size, progress=True)


def is_bundle(model: str) -> bool:
    return (Path(model) / "manifest.json").is_file()


def _bundle(cfg: EvalConfig, attrs: list[world.Attributes]) -> np.ndarray:
    import os


    pipe = Pipeline.from_bundle(cfg.model, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads or os.cpu_count() or 1)
    try:
        # The runtime splits the prompts into profile-sized calls; prompt i keeps noise stream i either way.
        return pipe.run([a.prompt for a in attrs], steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance).frames
    finally:
        pipe.close()


def model_kind(model: str) -> str:
    path = resolve_model_path(model)
    check_layout(path)
    return read_card(path).kind


def clip_source(cfg: EvalConfig) -> ClipSource:
    if cfg.model in SOURCES:
        return SOURCES[cfg.model]
    if is_bundle(cfg.model):
        return _bundle
    kind = model_kind(cfg.model)
    if kind not in MODEL_KINDS:
        raise ValueError(f"no sampler is registered for model kind {kind!r} (known: {sorted(MODEL_KINDS)})")
    return MODEL_KINDS[kind]


def run_eval(cfg: EvalConfig) -> dict[str, Any]:

    source = clip_source(cfg)
    attrs = world.prompt_set(cfg.prompts, cfg.num, seed=cfg.seed)
    start = time.perf_counter()
    clips = source(cfg, attrs)
    seconds = time.perf_counter() - start
    result = Evaluator().score(clips, attrs, split=cfg.prompts).to_dict()
    result.update(
        steps=cfg.steps,
        guidance=cfg.guidance,
        model=cfg.model,
        prompts=cfg.prompts,
        seconds_per_video=seconds / len(attrs),
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        config=cfg.to_dict(),
    )
    if cfg.save_clips:

        for i, (a, clip) in enumerate(zip(attrs, clips)):
            write_video(clip, Path(cfg.save_clips) / f"{i:03d}_{a.prompt.replace(' ', '_')}.gif", overwrite=True)
    if cfg.json:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json).write_text(json.dumps(result, indent=2) + "\n")
    return result
