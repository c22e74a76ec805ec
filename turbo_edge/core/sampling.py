"""Teacher sampling in PyTorch: prompt encoding, the teacher's own sampler with classifier-free guidance, decoding.

The update is the family's scheduler's ``step``: diffusers' ``DDIMScheduler`` for a DDPM-parameterised family
(UNet3D), the model's own flow scheduler (``FlowMatchEulerDiscreteScheduler`` or ``UniPCMultistepScheduler`` with
flow prediction) for a flow-matching family (Wan). Prompt encoding and decoding go through the family's plug points
(``core.text_encoders``, ``core.autoencoders``). Initial noise comes from the runtime's counter-based generator
(``turbo_edge.spec.noise``), one stream per prompt, so a clip does not depend on batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from turbo_edge.core.pipeline_io import T2VModel
from turbo_edge.spec.inputs import check_closed_vocabulary, check_prompt_text
from turbo_edge.spec.noise import normal
from turbo_edge.spec.sampler import DEFAULT_GUIDANCE


class PromptError(ValueError):
    """A prompt the model cannot be conditioned on (empty, or words outside a closed vocabulary)."""


def check_prompts(model: T2VModel, prompts: list[str]) -> None:
    if not prompts:
        raise PromptError("no prompts given")
    for p in prompts:
        try:  # the runtime's rules and messages (spec.inputs)
            check_closed_vocabulary(check_prompt_text(p), model.closed_vocabulary)
        except ValueError as exc:
            raise PromptError(str(exc)) from None


@torch.no_grad()
def encode_text(model: T2VModel, prompts: list[str]) -> torch.Tensor:
    """Prompts -> the denoiser's condition [B, L, D] (the family's text encoder). "" is the unconditional prompt."""
    return model.encode_prompts(prompts)


def clip_geometry(model: T2VModel, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int]:
    """(frames, height, width) of a clip: the arguments, else the model card's, else the family's defaults; a geometry
    the model cannot take is refused in one line naming the rule."""
    family = model.components
    vae_config = dict(model.vae.config)
    height = height or model.card.height or family.autoencoder.default_size(vae_config) or 256
    width = width or model.card.width or height
    frames = frames or model.card.frames or family.default_frames
    multiple = family.spatial_multiple(vae_config, dict(model.denoiser.config))
    geo = family.autoencoder.config_geometry(vae_config)
    geo.check(int(frames), int(height), int(width), multiple)
    family.denoiser.check_latent_size(dict(model.denoiser.config), geo.latent_frames(int(frames)), int(height) // geo.spatial_factor,
                                      int(width) // geo.spatial_factor)
    return int(frames), int(height), int(width)


def latent_shape(model: T2VModel, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int, int]:
    """(C, f, h, w) of the denoiser's input for a clip of (frames, height, width); defaults from ``clip_geometry``."""
    frames, height, width = clip_geometry(model, frames, height, width)
    geo = model.components.autoencoder.geometry(model.vae)
    return (int(model.denoiser.config.in_channels), geo.latent_frames(frames), height // geo.spatial_factor, width // geo.spatial_factor)


def initial_noise(shape: tuple[int, ...], seed: int, count: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([normal(seed, i, shape) for i in range(count)]))


def ddim_cfg_sample(
    model_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    x: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance: float,
    progress: bool = False,
) -> torch.Tensor:
    """The scheduler's steps (DDIM, or a flow solver) with classifier-free guidance; one batched call per step.

    ``model_fn(x, t, text)`` returns the network's raw prediction (whatever its prediction type).
    """
    text = torch.cat([uncond, cond])
    for t in tqdm(scheduler.timesteps, desc="ddim", disable=not progress, leave=False):
        out_uncond, out_cond = model_fn(torch.cat([x, x]), t.expand(2 * len(x)), text).chunk(2)
        guided = out_uncond + guidance * (out_cond - out_uncond)
        x = scheduler.step(guided, t, x).prev_sample
    return x


@torch.no_grad()
def decode(model: T2VModel, latents: torch.Tensor, decoder: torch.nn.Module | None = None) -> np.ndarray:
    """Latents [B, C, f, h, w] -> uint8 frames [B, F, H, W, 3] (the family's autoencoder). ``decoder``: an alternative
    decoder of the model (``core.tiny_decoder``: latents [B, C, f, h, w] -> frames [B, F, 3, H, W]) instead of its VAE's."""
    if decoder is None:
        return model.decode_latents(latents)
    images = ((decoder(latents).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 1, 3, 4, 2).numpy()


def sampling_scheduler(model: T2VModel, steps: int):
    """The teacher's own sampler at ``steps``: DDIM for a DDPM family, the model's flow scheduler for a flow family."""
    import diffusers

    family = model.components
    name = "DDIMScheduler" if family.parameterisation == "ddpm" else type(model.scheduler).__name__
    if family.schedulers and name not in family.schedulers:
        raise ValueError(f"{model.path}'s scheduler is a {name}; the {family.name} family samples with {' or '.join(family.schedulers)}")
    scheduler = getattr(diffusers, name).from_config(model.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def generate_teacher(
    model: T2VModel,
    prompts: list[str],
    steps: int = 50,
    guidance: float = DEFAULT_GUIDANCE,
    seed: int = 0,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
    decoder: torch.nn.Module | None = None,
) -> np.ndarray:
    """Teacher clips: the teacher's sampler at ``steps`` with CFG at ``guidance``, as uint8 [B, F, H, W, 3] (``decoder``: see
    ``decode``)."""
    check_prompts(model, prompts)
    shape = latent_shape(model, frames, height, width)
    scheduler = sampling_scheduler(model, steps)
    noise = initial_noise(shape, seed, len(prompts))

    def unet_fn(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return model.denoise(x, t, text)

    clips = []
    bar = tqdm(total=len(prompts), desc="teacher", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        cond = encode_text(model, chunk)
        uncond = encode_text(model, [""] * len(chunk))
        x = noise[start : start + len(chunk)] * getattr(scheduler, "init_noise_sigma", 1.0)  # flow: sigma 1 is unit noise
        latents = ddim_cfg_sample(unet_fn, scheduler, x, cond, uncond, guidance)
        if hasattr(scheduler, "_step_index"):  # flow schedulers count their steps: the next chunk starts again at step 0
            scheduler.set_timesteps(steps)
        clips.append(decode(model, latents, decoder))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(clips)
