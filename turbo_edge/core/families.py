"""Model families: which pipeline layout, denoiser, autoencoder, text encoder and parameterisation belong together.

A family is data: its pipeline class names (``model_index.json``'s ``_class_name``), one plug point per component
(``core.denoiser``, ``core.autoencoders``, ``core.text_encoders``) and its parameterisation (``ddpm``: eps / v / x0 on
a DDPM schedule, sampled with DDIM; ``flow``: flow matching, velocity prediction, shifted sigmas). Loading, saving,
sampling, data preparation and evaluation read everything family-specific from here. Adding a family is one entry
in ``MODEL_FAMILIES`` (plus a plug-point class for any component kind that is new).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turbo_edge.core.autoencoders import AUTOENCODERS, Autoencoder
from turbo_edge.core.denoiser import FAMILIES, DenoiserFamily
from turbo_edge.core.text_encoders import TEXT_ENCODERS, TextEncoderKind

PARAMETERISATIONS = ("ddpm", "flow")


@dataclass(frozen=True)
class ModelFamily:
    name: str
    pipeline_classes: tuple[str, ...]  # the first is what save_model writes
    denoiser: DenoiserFamily
    autoencoder: Autoencoder
    text: TextEncoderKind
    tokenizer_class: str  # what save_model writes into model_index.json
    # Scheduler classes model_index.json may name. Empty: any (a DDPM family reads only the schedule from the config,
    # and its teacher samples with DDIM whatever the directory names: ModelScope ships DDIM, a student LCMScheduler).
    schedulers: tuple[str, ...]
    parameterisation: str
    default_frames: int  # a model card that names no frame count: the family's pipeline default

    def __post_init__(self) -> None:
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation must be one of {PARAMETERISATIONS}, got {self.parameterisation!r}")

    def spatial_multiple(self, vae_config: dict[str, Any], denoiser_config: dict[str, Any]) -> int:
        """Frame height and width must be multiples of this: the autoencoder's factor times the denoiser's patch."""
        return self.autoencoder.config_geometry(vae_config).spatial_factor * self.denoiser.spatial_patch(denoiser_config)


MODEL_FAMILIES: dict[str, ModelFamily] = {
    "unet3d": ModelFamily(
        name="unet3d", pipeline_classes=("TextToVideoSDPipeline", "VideoToVideoSDPipeline", "TurboEdgeT2VPipeline"),
        denoiser=FAMILIES["UNet3DConditionModel"], autoencoder=AUTOENCODERS["AutoencoderKL"], text=TEXT_ENCODERS["CLIPTextModel"],
        tokenizer_class="CLIPTokenizer", schedulers=(), parameterisation="ddpm", default_frames=16,
    ),
    "wan": ModelFamily(
        name="wan", pipeline_classes=("WanPipeline",), denoiser=FAMILIES["WanTransformer3DModel"], autoencoder=AUTOENCODERS["AutoencoderKLWan"],
        text=TEXT_ENCODERS["UMT5EncoderModel"], tokenizer_class="T5Tokenizer",
        schedulers=("FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler"), parameterisation="flow", default_frames=81,
    ),
}


def family_components(name: str) -> ModelFamily:
    if name not in MODEL_FAMILIES:
        raise ValueError(f"model family {name!r} is not registered; turbo-edge has {sorted(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def family_of_pipeline(pipeline_class: str | None) -> ModelFamily | None:
    for family in MODEL_FAMILIES.values():
        if pipeline_class in family.pipeline_classes:
            return family
    return None


def all_pipeline_classes() -> tuple[str, ...]:
    return tuple(c for f in MODEL_FAMILIES.values() for c in f.pipeline_classes)
