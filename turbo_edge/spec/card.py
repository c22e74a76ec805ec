"""The model card, ``turbo_edge.json``: one versioned dataclass, one writer, one reader.

Every model directory turbo-edge writes (teacher, student, pruned student) carries one beside its diffusers
components: what the model is, the video geometry and vocabulary it knows, its sampler contract
(``SamplerSpec``, the object export writes into the bundle and the runtime runs), and its lineage (the model it
came from, the stage config and step that made it, its pruning plans) with a runnable ``reproduce`` line, and the
alternative decoders it carries beside its full VAE (``decoders``: a tiny decoder with its own lineage; an optional
key of version 2, absent where there are none).
A directory without a card (every third-party checkpoint) reads as ``ModelCard.absent()``: a teacher of unknown
geometry with an open vocabulary.

Version 1 cards (written before this class existed: flat keys, the stage's record under ``training`` /
``distill`` / ``prune``, the parent under ``teacher`` / ``student``) are migrated on read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from turbo_edge.spec.errors import CardError
from turbo_edge.spec.sampler import DEFAULT_FPS, DEFAULT_GUIDANCE, DEFAULT_TEACHER_STEPS, SamplerSpec

CARD_FILE = "turbo_edge.json"

CARD_VERSION = 2
MODEL_KINDS = ("teacher", "student", "pruned")
# v1: the key holding the stage record, per kind, and the key naming the parent model.
_V1_STAGE = {"teacher": "training", "student": "distill", "pruned": "prune"}
_V1_PARENT = {"student": "teacher", "pruned": "student"}
_STAGE_OF = {"teacher": "teacher_train", "student": "distill", "pruned": "prune"}


@dataclasses.dataclass
class Lineage:
    """Where a model came from. ``details`` holds the stage's own record (a pruned model's removed units and
    parameter counts, a teacher's chain of warm starts) as JSON."""

    stage: str  # teacher_train | distill | prune | decoder_train
    parent: str | None = None  # the model it was made from (an alias stays an alias, so the card stays portable)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # the stage config's to_dict()
    step: int | None = None
    plans: tuple[str, ...] = ()  # pruning-plan files beside the weights, replayed by core.replay
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "parent": self.parent, "config": self.config, "step": self.step, "plans": list(self.plans),
                "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lineage:
        return cls(stage=str(d["stage"]), parent=d.get("parent"), config=dict(d.get("config") or {}), step=d.get("step"),
                   plans=tuple(d.get("plans") or ()), details=dict(d.get("details") or {}))


@dataclasses.dataclass
class DecoderVariant:
    """An alternative decoder a model directory carries beside its full VAE (``turbo-edge decoder train``): the
    folder it lives in (diffusers form: ``config.json`` + safetensors), its class, how it was made, and how close its
    frames are to the full decoder's (``quality``: PSNR / SSIM on held-out latents, where the run measured them).
    The full decoder (``vae/``) stays the default; a card without variants has only it."""

    folder: str
    cls: str
    lineage: Lineage
    quality: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "class": self.cls, "lineage": self.lineage.to_dict(), "quality": self.quality}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderVariant:
        folder = str(d["folder"])
        # A folder of the model directory itself, never a path out of it: readers and copiers join it to the root.
        if not folder or folder in (".", "..") or any(sep in folder for sep in ("/", "\\")) or folder != folder.strip():
            raise CardError(f"decoders: folder {folder!r} is not a folder name inside the model directory (e.g. tiny_vae)")
        return cls(folder=folder, cls=str(d["class"]), lineage=Lineage.from_dict(d["lineage"]), quality=dict(d.get("quality") or {}))


@dataclasses.dataclass
class ModelCard:
    kind: str = "teacher"
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    closed_vocabulary: list[str] | None = None  # None: an open-vocabulary model
    default_guidance: float = DEFAULT_GUIDANCE
    sampler: SamplerSpec | None = None  # students: their consistency contract; teachers: None (export builds DDIM+CFG)
    lineage: Lineage | None = None
    reproduce: str | None = None
    weights_dtype: str | None = None
    # Frames a clip of this model starts with before the content its prompt describes (the builtin DiT's causal
    # autoencoder takes 1 + 4k frames: one lead-in frame, then the world's 8); evaluators skip them.
    lead_in_frames: int = 0
    fps: int = DEFAULT_FPS
    # The guidance scales a student was trained on (its w range); a scale outside it is extrapolation. None: a teacher.
    guidance_range: tuple[float, float] | None = None
    # The autoencoder's latent geometry as the model was written with it (core.autoencoders.LatentGeometry.to_dict()).
    latent_geometry: dict[str, Any] | None = None
    # Alternative decoders by name (``"tiny"``); written only when there are some, so cards without stay as they were.
    decoders: dict[str, DecoderVariant] = dataclasses.field(default_factory=dict)
    present: bool = dataclasses.field(default=True, compare=False)  # False: the directory had no card

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise CardError(f"model card kind {self.kind!r} is not one of {MODEL_KINDS}")
        if self.kind != "teacher" and (self.sampler is None or self.sampler.kind != "consistency"):
            raise CardError(f"a {self.kind} card must carry a consistency sampler contract; re-run the stage that wrote it")
        if isinstance(self.lead_in_frames, bool) or not isinstance(self.lead_in_frames, int) or self.lead_in_frames < 0:
            raise CardError(f"model card lead_in_frames must be an integer >= 0, got {self.lead_in_frames!r}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not 1 <= self.fps <= 240:
            raise CardError(f"model card fps must be an integer in [1, 240], got {self.fps!r}")
        if self.guidance_range is not None and (len(self.guidance_range) != 2 or not self.guidance_range[0] <= self.guidance_range[1]):
            raise CardError(f"model card guidance_range must be [low, high] with low <= high, got {self.guidance_range!r}")

    @classmethod
    def absent(cls) -> ModelCard:
        return cls(present=False)

    @property
    def default_steps(self) -> int:
        return self.sampler.default_steps if self.sampler else DEFAULT_TEACHER_STEPS

    @property
    def parent(self) -> str | None:
        return self.lineage.parent if self.lineage else None

    def geometry(self) -> dict[str, Any]:
        """frames / height / width / closed_vocabulary: what a child model inherits from its parent."""
        out = {"frames": self.frames, "height": self.height, "width": self.width, "closed_vocabulary": self.closed_vocabulary}
        if self.lead_in_frames:  # written only where set: the cards of models without lead-in stay as they were
            out["lead_in_frames"] = self.lead_in_frames
        return out

    def derived(self) -> dict[str, Any]:
        """The defaults and derived numbers a model's users read: steps, guidance and its trained range, fps, geometry."""
        return {"default_steps": self.default_steps, "default_guidance": self.default_guidance, "fps": self.fps,
                "guidance_range": list(self.guidance_range) if self.guidance_range else None, "latent_geometry": self.latent_geometry}

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "card_version": CARD_VERSION, "kind": self.kind, **self.geometry(), "default_guidance": self.default_guidance,
            "default_steps": self.default_steps, "fps": self.fps,
            "guidance_range": list(self.guidance_range) if self.guidance_range else None, "latent_geometry": self.latent_geometry,
            "sampler": self.sampler.to_dict() if self.sampler else None,
            "lineage": self.lineage.to_dict() if self.lineage else None,
            "reproduce": self.reproduce, "weights_dtype": self.weights_dtype,
            **({"decoders": {k: v.to_dict() for k, v in self.decoders.items()}} if self.decoders else {}),
        }

    @classmethod
    def from_dict(cls, d: Any) -> ModelCard:
        if not isinstance(d, dict):
            raise CardError(f"a model card is a JSON object, got {type(d).__name__}")
        version = d.get("card_version", 1)
        if version == 1:
            d = migrate_v1(d)
        elif version != CARD_VERSION:
            raise CardError(f"model card version {version} is not supported (this build reads 1 and {CARD_VERSION}); upgrade turbo-edge")
        try:
            guidance = float(d.get("default_guidance", DEFAULT_GUIDANCE))
            sampler = SamplerSpec.from_dict(d["sampler"], guidance=guidance) if d.get("sampler") else None
            return cls(kind=d.get("kind", "teacher"), frames=d.get("frames"), height=d.get("height"), width=d.get("width"),
                       closed_vocabulary=d.get("closed_vocabulary"), default_guidance=guidance, sampler=sampler,
                       lineage=Lineage.from_dict(d["lineage"]) if d.get("lineage") else None,
                       reproduce=d.get("reproduce"), weights_dtype=d.get("weights_dtype"), lead_in_frames=d.get("lead_in_frames", 0),
                       fps=d.get("fps", DEFAULT_FPS), latent_geometry=d.get("latent_geometry"),
                       guidance_range=tuple(float(g) for g in d["guidance_range"]) if d.get("guidance_range") else None,
                       decoders={str(k): DecoderVariant.from_dict(v) for k, v in (d.get("decoders") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CardError):
                raise
            raise CardError(f"model card is malformed ({type(exc).__name__}: {exc})") from exc


def migrate_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 card (flat keys) in version-2 form. Nothing is dropped: unknown stage keys land in ``details``."""
    kind = d.get("kind", "teacher")
    out = {k: d.get(k) for k in ("frames", "height", "width", "closed_vocabulary", "reproduce", "weights_dtype")}
    out.update(kind=kind, default_guidance=d.get("default_guidance", DEFAULT_GUIDANCE), card_version=CARD_VERSION)
    sampler = d.get("sampler")
    if sampler:
        out["sampler"] = {**sampler, "guidance": sampler.get("guidance", d.get("default_guidance", DEFAULT_GUIDANCE))}
    record = d.get(_V1_STAGE.get(kind, ""))
    if isinstance(record, dict):
        details = {k: v for k, v in record.items() if k not in ("config", "step", "unet_step")}
        step = record.get("step", record.get("unet_step"))
        out["lineage"] = {"stage": _STAGE_OF[kind], "parent": d.get(_V1_PARENT.get(kind, "")) or (record.get("config") or {}).get("init_from"),
                          "config": record.get("config") or {}, "step": step, "details": details,
                          "plans": [f for f in ("pruning_plan.json", "channel_plan.json") if kind == "pruned" and _plan_named(record, f)]}
    return out


def _plan_named(record: dict[str, Any], file: str) -> bool:
    if file == "pruning_plan.json":
        return bool(record.get("removed"))
    return float(record.get("channel_ratio") or 0.0) > 0


def read_card(model_dir: str | os.PathLike[str]) -> ModelCard:
    """The card of ``model_dir``; ``ModelCard.absent()`` where it has none; ``CardError`` where it is unreadable."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return ModelCard.absent()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{path} is not valid JSON ({exc}); restore it or re-run the stage that wrote it") from exc
    try:
        return ModelCard.from_dict(data)
    except CardError as exc:
        raise CardError(f"{path}: {exc}") from exc


def write_card(card: ModelCard, model_dir: str | os.PathLike[str]) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return path
