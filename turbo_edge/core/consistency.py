"""Consistency distillation pieces, each a small pure function over tensors (numbers from ``spec.param``).

Every function takes the model's ``param.NoiseSchedule`` (alpha_t, sigma_t per timestep index), so the same steps
distil a DDPM teacher (DDIM solver) and a flow-matching one (the DDIM step in alpha = 1 - sigma form *is* the flow
Euler step); a bare ``alphas_cumprod`` array is read as a DDPM schedule.

Step numbers follow one consistency-distillation iteration; the sampler at the bottom is what the student
runs at inference, so training and sampling share ``consistency_output`` and cannot drift.

1. pick a solver index n; t = grid[n], s = grid[n-1] (one solver step earlier, less noise)
2. x_t = alpha_t x0 + sigma_t eps                                   (param.add_noise)
3. student: f(x_t, t, w) = c_skip(t) x_t + c_out(t) x0_student      (consistency_output)
4. teacher with CFG at w, DDIM from t to s: x_s                      (guided_x0_eps, ddim_step)
5. target: f_target(x_s, s, w) without gradient                     (consistency_output)
6. loss = huber(f, target)                                          (pseudo_huber)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from turbo_edge.spec import param

Schedule = param.NoiseSchedule | np.ndarray


def as_schedule(sched: Schedule, prediction_type: str = "epsilon") -> param.NoiseSchedule:
    return sched if isinstance(sched, param.NoiseSchedule) else param.NoiseSchedule.ddpm(sched, prediction_type)


def coef(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """float64 numpy schedule values -> float32 tensor [B] on ``like``'s device."""
    return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=like.device)


def consistency_output(
    model_out: torch.Tensor, x_t: torch.Tensor, t: np.ndarray, sched: Schedule, prediction_type: str,
    timestep_scaling: float = 10.0, sigma_data: float = 0.5,
) -> torch.Tensor:
    """Step 3/5: the boundary-conditioned consistency function from a raw network output at timestep indices ``t``."""
    alpha, sigma = as_schedule(sched, prediction_type).alpha_sigma(t)
    x0, _ = param.to_x0_eps(prediction_type, model_out, x_t, coef(alpha, x_t), coef(sigma, x_t))
    c_skip, c_out = param.boundary_scalings(t, sigma_data, timestep_scaling)
    return param._bcast(coef(c_skip, x_t), x_t) * x_t + param._bcast(coef(c_out, x_t), x_t) * x0


def guided_x0_eps(
    out_cond: torch.Tensor, out_uncond: torch.Tensor, x_t: torch.Tensor, t: np.ndarray, sched: Schedule,
    prediction_type: str, w: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4a: classifier-free guidance on x0 and eps alike (T2V-Turbo's solver), w per sample."""
    alpha, sigma = (coef(v, x_t) for v in as_schedule(sched, prediction_type).alpha_sigma(t))
    x0_c, eps_c = param.to_x0_eps(prediction_type, out_cond, x_t, alpha, sigma)
    x0_u, eps_u = param.to_x0_eps(prediction_type, out_uncond, x_t, alpha, sigma)
    wb = param._bcast(w, x_t)
    return x0_u + wb * (x0_c - x0_u), eps_u + wb * (eps_c - eps_u)


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, s: np.ndarray, sched: Schedule) -> torch.Tensor:
    """Step 4b: deterministic DDIM jump to timestep(s) ``s`` (s < 0 means the clean end: alpha 1, sigma 0); on a flow
    schedule this is the Euler step ``x_t + (sigma_s - sigma_t) v``."""
    alpha, sigma = as_schedule(sched).alpha_sigma(s)
    return param.add_noise(x0, eps, coef(alpha, x0), coef(sigma, x0))


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """Step 6: sqrt((a-b)^2 + c^2) - c per sample, averaged over elements (LCM / T2V-Turbo's Huber loss)."""
    per_elem = torch.sqrt((a.float() - b.float()).square() + c * c) - c
    return per_elem.flatten(1).mean(dim=1)


def consistency_sample(
    model_fn: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    x: torch.Tensor,
    timesteps: np.ndarray,
    sched: Schedule,
    prediction_type: str,
    noise_fn: Callable[[int], torch.Tensor],
    timestep_scaling: float = 10.0,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    """Multistep consistency sampling (compare LCMScheduler.step): denoise, then re-noise to the next timestep.

    ``model_fn(x, t)`` returns the raw network output for timestep indices ``t`` [B] (it calls the network with
    ``sched.model_timestep(t)``); ``noise_fn(i)`` returns the fresh noise injected after step ``i``. Returns the final
    denoised latents.
    """
    sched = as_schedule(sched, prediction_type)
    b = x.shape[0]
    denoised = x
    for i, t in enumerate(timesteps):
        tt = np.full(b, int(t), dtype=np.int64)
        # Denoise: the consistency function at t.
        denoised = consistency_output(model_fn(x, tt), x, tt, sched, prediction_type, timestep_scaling, sigma_data)
        if i + 1 < len(timesteps):
            # Re-noise to the next (smaller) timestep with fresh noise.
            alpha, sigma = sched.alpha_sigma(np.full(b, int(timesteps[i + 1])))
            x = param.add_noise(denoised, noise_fn(i), coef(alpha, x), coef(sigma, x))
    return denoised
