"""Sampling a distilled student in PyTorch: one denoiser call per step, guidance given as an embedding.

The contract is the card's typed ``SamplerSpec`` (the object export writes into the bundle), so this sampler, the
export's int8 calibration and both runtimes read the same timesteps and scalings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from turbo_edge.core.consistency import consistency_sample
from turbo_edge.core.pipeline_io import T2VModel
from turbo_edge.core.sampling import check_prompts, decode, encode_text, latent_shape
from turbo_edge.spec import param
from turbo_edge.spec.noise import normal, stream_id
from turbo_edge.spec.sampler import SamplerSpec


def sampler_contract(model: T2VModel) -> SamplerSpec:
    sampler = model.card.sampler
    if sampler is None or sampler.kind != "consistency":
        raise ValueError(f"{model.path} is not a consistency student (its turbo_edge.json has no consistency sampler)")
    return sampler


def student_timesteps(sampler: SamplerSpec, steps: int) -> np.ndarray:
    if steps not in sampler.timesteps:
        raise ValueError(f"this student supports {list(sampler.supported_steps)} steps, not {steps}")
    return np.asarray(sampler.timesteps[steps], dtype=np.int64)


@torch.no_grad()
def student_latents(
    model: T2VModel,
    prompts: list[str],
    steps: int = 4,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    video_size: tuple[int | None, int | None, int | None] = (None, None, None),
    record: Callable[[dict[str, np.ndarray]], None] | None = None,
    first: int = 0,
    on_text: Callable[[torch.Tensor], None] | None = None,
) -> Iterator[torch.Tensor]:
    """The sampler's final latents [b, C, F, h, w], one batch of up to ``batch_size`` prompts at a time.

    ``video_size`` is (frames, height, width), None for the model's own. ``record``, if given, receives every
    UNet call's inputs, one dict per clip, as the exported graph takes them (int8 calibration uses this).
    Prompt ``i`` draws its noise from stream ``first + i`` whatever the batching, as the runtimes do (``first``: where
    a list continues a longer one, so a resumed run draws what the uninterrupted one did). ``on_text``, if given, receives
    each batch's text condition [b, L, D] as it is encoded (a caller that stores it need not encode the prompts again).
    """
    check_prompts(model, prompts)
    sampler = sampler_contract(model)
    timesteps = student_timesteps(sampler, steps)
    w = float(guidance if guidance is not None else sampler.guidance)
    sched = sampler.schedule(model.scheduler_config)
    shape = latent_shape(model, *video_size)
    w_emb = torch.from_numpy(param.guidance_embedding(w, int(sampler.w_embedding_dim)))
    for start in tqdm(range(0, len(prompts), batch_size), desc="student", disable=not progress):
        chunk = list(range(start, min(start + batch_size, len(prompts))))
        cond = encode_text(model, [prompts[i] for i in chunk])
        if on_text is not None:
            on_text(cond)

        def model_fn(x: torch.Tensor, t: np.ndarray, cond: torch.Tensor = cond) -> torch.Tensor:
            t_cond = w_emb.expand(len(x), -1)
            t_net = sched.model_timestep(t)  # DDPM: the index; flow: sigma_t * N
            if record is not None:
                timestep = np.broadcast_to(np.asarray(t_net, dtype=np.float32), (len(x),))
                for i in range(len(x)):
                    record({
                        "sample": x[i : i + 1].numpy().astype(np.float32),
                        "timestep": timestep[i : i + 1].copy(),
                        "encoder_hidden_states": cond[i : i + 1].numpy().astype(np.float32),
                        "timestep_cond": t_cond[i : i + 1].numpy().astype(np.float32),
                    })
            return model.denoise(x, torch.from_numpy(t_net), cond, t_cond)

        def noise_fn(step: int, chunk: list[int] = chunk) -> torch.Tensor:
            return torch.from_numpy(np.stack([normal(seed, stream_id(first + i, step + 1), shape) for i in chunk]))

        x = torch.from_numpy(np.stack([normal(seed, stream_id(first + i, 0), shape) for i in chunk]))
        yield consistency_sample(
            model_fn, x, timesteps, sched, sampler.prediction_type, noise_fn,
            sampler.timestep_scaling, sampler.sigma_data,
        )


@torch.no_grad()
def generate_student(
    model: T2VModel,
    prompts: list[str],
    steps: int = 4,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    video_size: tuple[int | None, int | None, int | None] = (None, None, None),
    record: Callable[[dict[str, np.ndarray]], None] | None = None,
    decoder: torch.nn.Module | None = None,
) -> np.ndarray:
    """Student clips as uint8 [B, F, H, W, 3]; noise from the runtime's counter generator (same as the runtimes).

    The arguments are ``student_latents``'; each batch is decoded as it is done, by ``decoder`` where given (an
    alternative decoder of the model, ``sampling.decode``).
    """
    batches = student_latents(model, prompts, steps, guidance, seed, batch_size, progress, video_size, record)
    return np.concatenate([decode(model, latents, decoder) for latents in batches])
