"""Teacher sampling in PyTorch: prompt encoding, DDIM with classifier-free guidance, VAE decoding.

The DDIM update is diffusers' ``DDIMScheduler.step``; initial noise comes from the runtime's counter-based
generator (``turbo_edge.spec.noise``), one stream per prompt, so a clip does not depend on batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from turbo_edge.core.pipeline_io import T2VModel
from turbo_edge.spec.inputs import check_closed_vocabulary, check_prompt_text
from turbo_edge.spec.noise import normal


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


def max_text_length(model: T2VModel) -> int:
    return min(int(model.tokenizer.model_max_length), int(model.text_encoder.config.max_position_embeddings))


@torch.no_grad()
def encode_text(model: T2VModel, prompts: list[str]) -> torch.Tensor:
    """Token ids -> CLIP last hidden state [B, L, D]. The empty string is the unconditional prompt."""
    ids = model.tokenizer(prompts, padding="max_length", max_length=max_text_length(model), truncation=True, return_tensors="pt").input_ids
    return model.text_encoder(ids).last_hidden_state


def latent_shape(model: T2VModel, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int, int]:
    """(C, F, h, w) of the UNet's input; defaults come from the model's own configs."""
    scale = 2 ** (len(model.vae.config.block_out_channels) - 1)
    height = height or int(model.vae.config.sample_size)
    width = width or height
    frames = frames or int(model.card.frames or 16)
    if height % scale or width % scale:
        raise ValueError(f"height and width must be multiples of the VAE's factor {scale}, got {height}x{width}")
    return (int(model.unet.config.in_channels), frames, height // scale, width // scale)


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
    """DDIM over ``scheduler.timesteps`` with classifier-free guidance; one batched call per step.

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
    """Latents [B, C, F, h, w] -> uint8 frames [B, F, H, W, 3]. ``decoder``: an alternative decoder of the model
    (``core.tiny_decoder``: scaled latents [B, C, F, h, w] -> frames [B, F', 3, H, W]) instead of its VAE's."""
    b, c, f, h, w = latents.shape
    if decoder is not None:
        images = decoder(latents)
        b, f = images.shape[:2]
        images = images.flatten(0, 1)
    else:
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / model.vae.config.scaling_factor
        images = torch.cat([model.vae.decode(chunk).sample for chunk in flat.split(64)])
    images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.reshape(b, f, *images.shape[1:]).permute(0, 1, 3, 4, 2).numpy()


@torch.no_grad()
def generate_teacher(
    model: T2VModel,
    prompts: list[str],
    steps: int = 50,
    guidance: float = 3.0,
    seed: int = 0,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
    decoder: torch.nn.Module | None = None,
) -> np.ndarray:
    """Teacher clips: DDIM ``steps`` with CFG at ``guidance``, as uint8 [B, F, H, W, 3] (``decoder``: see ``decode``)."""
    from diffusers import DDIMScheduler

    check_prompts(model, prompts)
    shape = latent_shape(model, frames, height, width)
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps)
    noise = initial_noise(shape, seed, len(prompts))

    def unet_fn(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return model.denoise(x, t, text)

    clips = []
    bar = tqdm(total=len(prompts), desc="teacher", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        cond = encode_text(model, chunk)
        uncond = encode_text(model, [""] * len(chunk))
        x = noise[start : start + len(chunk)] * scheduler.init_noise_sigma
        latents = ddim_cfg_sample(unet_fn, scheduler, x, cond, uncond, guidance)
        clips.append(decode(model, latents, decoder))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(clips)
