"""``turbo-edge eval``: generate clips for a split's prompts and score them with the held-out evaluator.

Beyond the world: ``--prompts FILE`` generates one clip per line of a prompt file, and ``--clip DIR`` /
``--fd-features DIR --reference PATH`` score them with models the user names (``core.clip_eval``). The world's
evaluator judges world attributes only, so with a prompt file it runs only when every prompt is a world prompt;
the result says which (``world_evaluator``). With a split, the result is the evaluator's, as before.

Clip sources register by name: ``groundtruth`` and ``noise`` (the evaluator's own sanity anchors) and
model kinds read from a model directory's ``turbo_edge.json`` (``teacher`` here; later stages add theirs).
A bundle directory (``turbo-edge export``'s, with ``manifest.json``) runs through the torch-free runtime on
``--backend`` at ``--precision``, so an int8 bundle is scored by the same evaluator as the model it came from.
"""

from __future__ import annotations

import logging
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.core import world
from turbo_edge.core.clip_eval import ClipModel, FeatureModel, clip_scores, fd_score
from turbo_edge.core.evaluator import Evaluator
from turbo_edge.core.pipeline_io import check_layout, load_teacher, resolve_model_path
from turbo_edge.core.reference_clips import load_reference
from turbo_edge.core.sampling import generate_teacher
from turbo_edge.core.student_sampling import generate_student
from turbo_edge.core.tiny_decoder import load_decoder_variant
from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.runtime.video import write_video
from turbo_edge.spec.bundle import is_bundle, load_bundle
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import EvalConfig
from turbo_edge.spec.outputs import check_json_output, write_json_output
from turbo_edge.spec.prompt_file import read_prompt_file

log = logging.getLogger(__name__)
# A source turns prompts into uint8 clips [B, F, H, W, 3]; prompt i gets noise stream i of cfg.seed.
ClipSource = Callable[["EvalConfig", list[str]], np.ndarray]
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
def _groundtruth(cfg: EvalConfig, prompts: list[str]) -> np.ndarray:
    rng_base = 10_000 + cfg.seed
    return np.stack([world.render_clip(_world_prompt(p, "--model groundtruth renders world clips"), np.random.default_rng([rng_base, i]))
                     for i, p in enumerate(prompts)])


def _world_prompt(prompt: str, why: str) -> world.Attributes:
    try:
        return world.parse_prompt(prompt)
    except ValueError as exc:
        raise ValueError(f"{why}: {exc}") from None


@register_source("noise")
def _noise(cfg: EvalConfig, prompts: list[str]) -> np.ndarray:
    wc = world.WorldConfig()
    rng = np.random.default_rng(cfg.seed)
    return rng.integers(0, 256, size=(len(prompts), wc.frames, wc.size, wc.size, 3), dtype=np.uint8)


@register_model_kind("teacher")
def _teacher(cfg: EvalConfig, prompts: list[str]) -> np.ndarray:

    model = load_teacher(cfg.model)
    guidance = cfg.guidance if cfg.guidance is not None else float(model.card.default_guidance)
    return generate_teacher(
        model, prompts, steps=cfg.steps or model.card.default_steps, guidance=guidance, seed=cfg.seed,
        frames=cfg.frames, height=cfg.height, width=cfg.width, batch_size=cfg.batch_size, progress=True,
        decoder=load_decoder_variant(model.path, cfg.decoder),
    )


@register_model_kind("pruned")
@register_model_kind("student")
def _student(cfg: EvalConfig, prompts: list[str]) -> np.ndarray:

    model = load_teacher(cfg.model)
    return generate_student(model, prompts, steps=cfg.steps or model.card.default_steps, guidance=cfg.guidance, seed=cfg.seed,
                            batch_size=cfg.batch_size, progress=True, video_size=(cfg.frames, cfg.height, cfg.width),
                            decoder=load_decoder_variant(model.path, cfg.decoder))


def _bundle(cfg: EvalConfig, prompts: list[str]) -> np.ndarray:
    import os


    pipe = Pipeline.from_bundle(cfg.model, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads or os.cpu_count() or 1,
                                decoder=cfg.decoder)
    try:
        # The runtime splits the prompts into profile-sized calls; prompt i keeps noise stream i either way.
        return pipe.run(prompts, steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance, frames=cfg.frames, height=cfg.height,
                        width=cfg.width).frames
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


def resolved_steps(cfg: EvalConfig) -> int | None:
    """The step count a source samples with: ``--steps``, else the model's own default (its card's, or the bundle's)."""
    if cfg.steps is not None or cfg.model in SOURCES:
        return cfg.steps
    if is_bundle(cfg.model):
        from turbo_edge.spec.bundle import read_manifest

        sampler = read_manifest(cfg.model).get("sampler") or {}
        return sampler.get("default_steps")
    return read_card(resolve_model_path(cfg.model)).default_steps


def lead_in_frames(cfg: EvalConfig) -> int:
    """Frames a model's clips start with before the prompt's content (its card's ``lead_in_frames``); the world's
    evaluator skips them, so a 9-frame DiT clip is scored on the 8 frames the evaluator knows."""
    return model_lead_in(cfg.model)


def model_lead_in(model: str | Path) -> int:
    """A model directory's (its card) or a bundle's (its manifest) lead-in frames; 0 for an evaluator anchor."""
    if str(model) in SOURCES:
        return 0
    if is_bundle(model):
        return load_bundle(model, verify=False, runnable=False).lead_in_frames
    return read_card(resolve_model_path(model)).lead_in_frames


def world_attributes(prompts: list[str]) -> tuple[list[world.Attributes] | None, dict[str, Any]]:
    """The world attributes of a prompt file's prompts when every one is a world prompt (then the world's evaluator
    scores them, against the held-out split's real clips if every triple is held out, else the val split's), and a
    record of the decision."""
    attrs = []
    for i, prompt in enumerate(prompts):
        try:
            attrs.append(world.parse_prompt(prompt))
        except ValueError as exc:
            return None, {"ran": False, "reason": f"prompt {i + 1} is not a world prompt ({exc}); the world's evaluator scores world "
                                                  "attributes only"}
    split = "heldout" if all(world.is_heldout(a) for a in attrs) else "val"
    return attrs, {"ran": True, "reason": f"every prompt is a world prompt; its fd is against the {split} split's real clips", "split": split}


def _file_name(i: int, prompt: str) -> str:
    return f"{i:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', prompt).strip('_')[:60]}.gif"


def quality_row(result: dict[str, Any]) -> dict[str, Any]:
    """A benchmark's row from ``run_eval``'s result: content and motion (the evaluator's accuracies) and what was run."""
    keep = ("direction_acc", "all_acc", "fd", "n_videos", "steps", "seconds_per_video", "lead_in_frames_skipped")
    return {"content": result["content_acc"], "motion": result["motion_acc"], **{k: result[k] for k in keep if k in result}}


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Generate clips for ``cfg.prompts`` (a split, or a prompt file) and score them; the result is JSON-ready."""
    if cfg.json:
        check_json_output(cfg.json, cfg.overwrite)  # before any clip is generated, not after
    source = clip_source(cfg)
    note: dict[str, Any] | None = None
    if cfg.is_prompt_file():
        prompts, prompts_sha256 = read_prompt_file(cfg.prompts)
        attrs, note = world_attributes(prompts)
        if attrs is None and not (cfg.clip or cfg.fd_features):
            raise ValueError(f"nothing scores the prompts of {cfg.prompts}: {note['reason']}; add --clip DIR and/or --fd-features DIR "
                             "--reference PATH")
        log.info("world evaluator: %s (%s)", "runs" if note["ran"] else "not run", note["reason"])
        split = note.get("split", "val")
    else:
        attrs = world.prompt_set(cfg.prompts, cfg.num, seed=cfg.seed)
        prompts, prompts_sha256, split = [a.prompt for a in attrs], None, cfg.prompts
    # The user's scoring models load before sampling, so a wrong directory fails in seconds, not after the clips.
    clip_model = ClipModel.load(cfg.clip) if cfg.clip else None
    features = FeatureModel.load(cfg.fd_features) if cfg.fd_features else None
    if cfg.reference and not Path(cfg.reference).exists():
        raise FileNotFoundError(f"--reference {cfg.reference} does not exist: give a prepared dataset (turbo-edge data prepare) or a folder of videos")
    start = time.perf_counter()
    clips = source(cfg, prompts)
    seconds = time.perf_counter() - start
    lead_in = lead_in_frames(cfg)
    scored = clips[:, lead_in:]
    result: dict[str, Any] = Evaluator().score(scored, attrs, split=split).to_dict() if attrs is not None else {"n_videos": len(clips)}
    if lead_in:
        result["lead_in_frames_skipped"] = lead_in
    if note is not None:
        result.update(prompts_sha256=prompts_sha256, n_prompts=len(prompts), world_evaluator=note)
    if clip_model is not None:
        result["clip"] = clip_scores(clip_model, clips, prompts)
    if features is not None and cfg.reference:
        reference, where = load_reference(cfg.reference, *clips.shape[1:4], limit=cfg.reference_num)
        result["fd_features"] = {**fd_score(features, clips, reference), "reference": where}
    result.update(
        steps=resolved_steps(cfg),
        guidance=cfg.guidance,
        model=cfg.model,
        decoder=cfg.decoder,
        prompts=cfg.prompts,
        seconds_per_video=seconds / len(prompts),
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        config=cfg.to_dict(),
    )
    if cfg.save_clips:

        for i, (prompt, clip) in enumerate(zip(prompts, clips)):
            write_video(clip, Path(cfg.save_clips) / _file_name(i, prompt), overwrite=True)
    if cfg.json:
        write_json_output(cfg.json, result, "eval", cfg.overwrite)
    return result
