"""Few-step samplers as pure numpy functions of ``(model_fn, x, timesteps, *, noise_fn)``: no IO, no backend.

Schedule numbers come from the bundle (``alphas_cumprod``, timesteps); prediction-type conversions and
consistency scalings come from the one parameterisation module (``turbo_edge.spec.param``, numpy-only),
so the runtime cannot drift from training. Each update is folded into two float64 scalars ``x <- A*x + B*out``
(the conversions are linear in ``x`` and ``out``) and applied in place on float32, so the loop allocates no
arrays of its own. ``runtime/cpp/src/samplers.cpp`` implements the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from turbo_edge.spec import param
from turbo_edge.spec.sampler import SamplerSpec

# model_fn(x [B, ...], t) -> raw network prediction; for ddim_cfg it is [2B, ...]: unconditional half first.
ModelFn = Callable[[np.ndarray, int], np.ndarray]
NoiseFn = Callable[[int], np.ndarray]  # noise_fn(step_index) -> fresh standard normal noise shaped like x


def linear_x0_eps(prediction_type: str, alpha: float, sigma: float) -> tuple[float, float, float, float]:
    """(x0 = a*x + b*out, eps = c*x + d*out) coefficients of ``param.to_x0_eps`` (it is linear in both)."""
    basis_x, basis_out = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    x0, eps = param.to_x0_eps(prediction_type, basis_out, basis_x, np.array([alpha, alpha]), np.array([sigma, sigma]))
    return float(x0[0]), float(x0[1]), float(eps[0]), float(eps[1])


def ddim_prev_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> list[int]:
    """diffusers' ``DDIMScheduler.step``: previous timestep = t - num_train_timesteps // steps (may be < 0)."""
    gap = num_train_timesteps // len(timesteps)
    return [int(t) - gap for t in timesteps]


def abar_at(alphas_cumprod: np.ndarray, t: int, final_alpha_cumprod: float = 1.0) -> float:
    """abar_t; before the first timestep it is ``final_alpha_cumprod`` (1 with ``set_alpha_to_one``: lands on x0)."""
    return float(alphas_cumprod[t]) if t >= 0 else final_alpha_cumprod


def alpha_sigma_at(t: int, alphas_cumprod: np.ndarray | None, flow_shift: float | None, num_train_timesteps: int) -> tuple[float, float]:
    """(alpha_t, sigma_t) at timestep index ``t``: sqrt(abar) / sqrt(1 - abar) on a DDPM schedule; on a flow schedule
    ``sigma_t = shift((t + 1) / N)``, ``alpha = 1 - sigma`` (``param.flow_schedule``, the distiller's indices)."""
    if flow_shift is None:
        abar = abar_at(alphas_cumprod, t)
        return math.sqrt(abar), math.sqrt(1.0 - abar)
    sigma = float(param.flow_shift((t + 1) / num_train_timesteps, flow_shift))
    return 1.0 - sigma, sigma


def guidance_embedding(w: float, dim: int, batch: int) -> np.ndarray:
    """``param.guidance_embedding`` (the one the student was trained with) repeated to float32 [batch, dim]."""
    return np.repeat(param.guidance_embedding(w, dim), batch, axis=0)


def ddim_cfg(
    model_fn: ModelFn,
    x: np.ndarray,
    timesteps: Sequence[int],
    *,
    alphas_cumprod: np.ndarray,
    prediction_type: str,
    guidance: float,
    prev_timesteps: Sequence[int],
    final_alpha_cumprod: float = 1.0,
    noise_fn: NoiseFn | None = None,
) -> np.ndarray:
    """Deterministic DDIM (eta = 0) with classifier-free guidance; compare diffusers ``DDIMScheduler.step``.

    ``x`` is updated in place and returned. ``noise_fn`` is unused (eta = 0) and accepted for a uniform signature.
    """
    b = x.shape[0]
    guided = np.empty_like(x)
    for t, prev in zip(timesteps, prev_timesteps):
        out = model_fn(x, int(t))
        # 1. Guidance: uncond + w * (cond - uncond).
        np.subtract(out[b:], out[:b], out=guided)
        guided *= np.float32(guidance)
        guided += out[:b]
        # 2. x0 and eps from the prediction, at abar_t (param.to_x0_eps).
        abar_t, abar_prev = abar_at(alphas_cumprod, int(t)), abar_at(alphas_cumprod, int(prev), final_alpha_cumprod)
        kx0_x, kx0_o, keps_x, keps_o = linear_x0_eps(prediction_type, math.sqrt(abar_t), math.sqrt(1.0 - abar_t))
        # 3. DDIM update: x_prev = sqrt(abar_prev) * x0 + sqrt(1 - abar_prev) * eps.
        a_prev, s_prev = math.sqrt(abar_prev), math.sqrt(1.0 - abar_prev)
        x *= np.float32(a_prev * kx0_x + s_prev * keps_x)
        guided *= np.float32(a_prev * kx0_o + s_prev * keps_o)
        x += guided
    return x


def consistency(
    model_fn: ModelFn,
    x: np.ndarray,
    timesteps: Sequence[int],
    *,
    alphas_cumprod: np.ndarray | None,
    prediction_type: str,
    noise_fn: NoiseFn,
    sigma_data: float = 0.5,
    timestep_scaling: float = 10.0,
    flow_shift: float | None = None,
    num_train_timesteps: int = 1000,
) -> np.ndarray:
    """Multistep consistency sampling (LCM / T2V-Turbo); compare diffusers ``LCMScheduler.step``.

    Each step predicts x0 through the boundary condition, then (except at the last step) re-noises it to the
    next timestep with ``noise_fn(step_index + 1)``. ``x`` is updated in place and returned. A flow student
    (``flow_shift``): the same steps on the flow schedule's (alpha, sigma) at each timestep index, the network fed
    ``sigma_t * N`` in float32 (the distiller's ``core.consistency.consistency_sample`` over ``NoiseSchedule.flow``).
    """
    scratch = np.empty_like(x)
    for i, t in enumerate(timesteps):
        alpha_t, sigma_t = alpha_sigma_at(int(t), alphas_cumprod, flow_shift, num_train_timesteps)
        out = model_fn(x, int(t) if flow_shift is None else float(np.float32(sigma_t * num_train_timesteps)))
        kx0_x, kx0_o, _, _ = linear_x0_eps(prediction_type, alpha_t, sigma_t)
        # 1. Boundary scalings: denoised = c_skip * x_t + c_out * x0_pred (param.boundary_scalings).
        c_skip, c_out = (float(v) for v in param.boundary_scalings(np.array(float(t)), sigma_data, timestep_scaling))
        np.multiply(out, np.float32(c_out * kx0_o), out=scratch)
        x *= np.float32(c_skip + c_out * kx0_x)
        x += scratch
        if i == len(timesteps) - 1:
            break
        # 2. Re-noise the denoised sample to the next timestep with fresh noise.
        alpha_next, sigma_next = alpha_sigma_at(int(timesteps[i + 1]), alphas_cumprod, flow_shift, num_train_timesteps)
        x *= np.float32(alpha_next)
        np.multiply(noise_fn(i + 1), np.float32(sigma_next), out=scratch)
        x += scratch
    return x


def flow_euler_cfg(
    model_fn: ModelFn,
    x: np.ndarray,
    timesteps: Sequence[float],
    *,
    sigmas: Sequence[float],
    guidance: float,
    noise_fn: NoiseFn | None = None,
) -> np.ndarray:
    """Flow-matching Euler with classifier-free guidance; compare diffusers ``FlowMatchEulerDiscreteScheduler.step``:
    ``x <- x + (sigma_next - sigma) * v``, the velocity guided as ``uncond + w (cond - uncond)``. ``timesteps[i]`` is
    ``sigmas[i] * num_train_timesteps`` (what the network is fed); ``sigmas`` ends at 0. ``noise_fn`` is unused."""
    if len(sigmas) != len(timesteps) + 1:
        raise ValueError(f"flow Euler needs one more sigma than timesteps, got {len(sigmas)} and {len(timesteps)}")
    b = x.shape[0]
    guided = np.empty_like(x)
    for i, t in enumerate(timesteps):
        out = model_fn(x, t)
        np.subtract(out[b:], out[:b], out=guided)
        guided *= np.float32(guidance)
        guided += out[:b]
        guided *= np.float32(sigmas[i + 1]) - np.float32(sigmas[i])  # float32, as the scheduler's sigmas
        x += guided
    return x


def ddim_cfg_options(spec: SamplerSpec, timesteps: Sequence[int], guidance: float) -> dict[str, Any]:
    return {"alphas_cumprod": spec.alphas_cumprod, "prediction_type": spec.prediction_type, "guidance": guidance,
            "prev_timesteps": ddim_prev_timesteps(timesteps, spec.num_train_timesteps), "final_alpha_cumprod": spec.final_alpha_cumprod}


def consistency_options(spec: SamplerSpec, timesteps: Sequence[int], guidance: float) -> dict[str, Any]:
    return {"alphas_cumprod": spec.alphas_cumprod, "prediction_type": spec.prediction_type, "sigma_data": spec.sigma_data,
            "timestep_scaling": spec.timestep_scaling, "flow_shift": spec.flow_shift, "num_train_timesteps": spec.num_train_timesteps}


def flow_euler_cfg_options(spec: SamplerSpec, timesteps: Sequence[float], guidance: float) -> dict[str, Any]:
    return {"sigmas": (spec.sigmas or {})[len(timesteps)], "guidance": guidance}


# The bundle's sampler kind -> (sampler, the keyword options it takes from the contract). The pipeline dispatches here.
SAMPLERS: dict[str, tuple[Callable[..., np.ndarray], Callable[[SamplerSpec, Sequence[int], float], dict[str, Any]]]] = {
    "ddim_cfg": (ddim_cfg, ddim_cfg_options),
    "consistency": (consistency, consistency_options),
    "flow_euler_cfg": (flow_euler_cfg, flow_euler_cfg_options),
}
