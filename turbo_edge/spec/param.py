"""The one parameterisation module: noise schedule, prediction-type conversions, consistency scalings.

Training losses (teacher, distill/, prune/), samplers and export all use these functions, and the bundle
carries the numbers they produce (the sampler contract's ``alphas_cumprod`` and timesteps, ``spec.sampler``) so the
torch-free runtime computes nothing new.
Schedule math is float64 numpy; the tensor helpers broadcast per-sample coefficients over ``[B, ...]``.

Notation: ``x_t = alpha_t * x0 + sigma_t * eps`` with ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``;
``v = alpha_t * eps - sigma_t * x0``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")  # flow: velocity eps - x0, with alpha = 1 - sigma


def betas_for(config: dict[str, Any]) -> np.ndarray:
    """Betas for a diffusers scheduler config (the schedules diffusers' DDPM/DDIM/LCM schedulers define)."""
    n = int(config.get("num_train_timesteps", 1000))
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        return np.asarray(config["trained_betas"], dtype=np.float64)
    if kind == "linear":
        return np.linspace(start, end, n, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)], dtype=np.float64)
    raise ValueError(f"beta_schedule {kind!r} is not supported; use linear, scaled_linear or squaredcos_cap_v2")


def alphas_cumprod(config: dict[str, Any]) -> np.ndarray:
    return np.cumprod(1.0 - betas_for(config))


def alpha_sigma(abar: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    abar = np.asarray(abar, dtype=np.float64)
    return np.sqrt(abar), np.sqrt(1.0 - abar)


def snr(abar: np.ndarray) -> np.ndarray:
    return abar / (1.0 - abar)


def min_snr_weight(abar: np.ndarray, gamma: float, prediction_type: str, plus_one: bool = False) -> np.ndarray:
    """Min-SNR-gamma loss weight (Hang et al. 2023), expressed for the network's prediction target.

    In x0 terms the weight is ``min(SNR, gamma)``, which vanishes at pure noise. ``plus_one`` uses
    ``min(SNR, gamma) + 1`` instead: the same clipping at low noise, and unit weight at high noise, where a
    clip's layout and motion are decided (plain v-prediction loss is ``SNR + 1``).
    """
    s = snr(abar)
    clipped = np.minimum(s, gamma) + (1.0 if plus_one else 0.0)
    if prediction_type == "epsilon":
        return clipped / s
    if prediction_type == "v_prediction":
        return clipped / (s + 1.0)
    if prediction_type == "sample":
        return clipped
    if prediction_type == "flow_prediction":
        raise ValueError("min-SNR weighting is defined here for DDPM schedules; flow matching trains the velocity unweighted")
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}")


def _bcast(coef: Any, like: Any) -> Any:
    """Reshape per-sample coefficients [B] to broadcast over a tensor/array of shape [B, ...]."""
    return coef.reshape(coef.shape[0], *([1] * (like.ndim - 1)))


def add_noise(x0: Any, eps: Any, alpha: Any, sigma: Any) -> Any:
    return _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * eps


def target_for(prediction_type: str, x0: Any, eps: Any, alpha: Any, sigma: Any) -> Any:
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return _bcast(alpha, x0) * eps - _bcast(sigma, x0) * x0
    if prediction_type == "sample":
        return x0
    if prediction_type == "flow_prediction":
        return eps - x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}")


def to_x0_eps(prediction_type: str, model_out: Any, x_t: Any, alpha: Any, sigma: Any) -> tuple[Any, Any]:
    """Recover (x0, eps) from a network output of the given prediction type."""
    a, s = _bcast(alpha, x_t), _bcast(sigma, x_t)
    if prediction_type == "epsilon":
        return (x_t - s * model_out) / a, model_out
    if prediction_type == "v_prediction":
        return a * x_t - s * model_out, s * x_t + a * model_out
    if prediction_type == "sample":
        return model_out, (x_t - a * model_out) / s
    if prediction_type == "flow_prediction":  # x_t = (1 - sigma) x0 + sigma eps: alpha is 1 - sigma
        return x_t - s * model_out, x_t + a * model_out
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}")


def boundary_scalings(timestep: np.ndarray, sigma_data: float = 0.5, timestep_scaling: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Consistency-model boundary condition: c_skip(0) = 1, c_out(0) = 0 (LCM / T2V-Turbo, t scaled by 10)."""
    t = np.asarray(timestep, dtype=np.float64) * timestep_scaling
    c_skip = sigma_data**2 / (t**2 + sigma_data**2)
    c_out = t / np.sqrt(t**2 + sigma_data**2)
    return c_skip, c_out


def ddim_timesteps(num_train_timesteps: int, steps: int) -> np.ndarray:
    """Trailing spacing, descending: ``steps`` timesteps ending at ``num_train_timesteps - 1``."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    return np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / steps)).astype(np.int64) - 1


def solver_timesteps(num_train_timesteps: int, origin_steps: int) -> np.ndarray:
    """The teacher ODE solver's grid, ascending: ``k, 2k, ..., T`` minus one (LCM's ``origin_steps`` grid)."""
    if not 1 <= origin_steps <= num_train_timesteps:
        raise ValueError(f"origin_steps must be in [1, {num_train_timesteps}], got {origin_steps}")
    step = num_train_timesteps // origin_steps
    return np.arange(1, origin_steps + 1, dtype=np.int64) * step - 1


def consistency_timesteps(num_train_timesteps: int, origin_steps: int, steps: int) -> np.ndarray:
    """A few-step student's timesteps, descending, picked from the solver grid (compare LCMScheduler.set_timesteps)."""
    grid = solver_timesteps(num_train_timesteps, origin_steps)
    if not 1 <= steps <= origin_steps:
        raise ValueError(f"steps must be in [1, {origin_steps}], got {steps}")
    # Evenly spaced indices into the descending grid, floored (compare LCMScheduler.set_timesteps).
    indices = np.floor(np.linspace(0, origin_steps, num=steps, endpoint=False)).astype(np.int64)
    return grid[::-1][indices].copy()


def guidance_embedding(w: np.ndarray | float, dim: int) -> np.ndarray:
    """Sinusoidal embedding of the guidance scale fed to ``timestep_cond`` (as LCM / T2V-Turbo: w scaled by 1000)."""
    if dim % 2:
        raise ValueError(f"w-embedding dim must be even, got {dim}")
    w = np.atleast_1d(np.asarray(w, dtype=np.float64)) * 1000.0
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half, dtype=np.float64) / (half - 1))
    args = w[:, None] * freqs[None, :]
    return np.concatenate([np.sin(args), np.cos(args)], axis=1).astype(np.float32)


# ---------------------------------------------------------------- flow matching (Wan, SD3): velocity prediction
#
# ``x_sigma = (1 - sigma) * x0 + sigma * eps`` for sigma in [0, 1] (1: pure noise), the network predicts the velocity
# ``v = eps - x0`` at timestep ``sigma * num_train_timesteps``; an Euler step from sigma to sigma' is
# ``x + (sigma' - sigma) * v`` (compare FlowMatchEulerDiscreteScheduler.step). ``shift`` moves the grid towards high
# noise: ``shift * s / (1 + (shift - 1) * s)`` (the scheduler's static shift; Wan2.1 uses 3 at 480p, 5 at 720p).

FLOW_PREDICTION = "flow_prediction"


def flow_shift(s: np.ndarray | float, shift: float) -> np.ndarray:
    """Shift sigmas in [0, 1] towards 1 (high noise); ``shift`` 1 is the identity."""
    s = np.asarray(s, dtype=np.float64)
    return shift * s / (1.0 + (shift - 1.0) * s)


def flow_sigmas(steps: int, shift: float, num_train_timesteps: int = 1000) -> np.ndarray:
    """The sampler's ``steps`` sigmas, descending from 1, plus the final 0 (length ``steps + 1``), exactly as diffusers'
    FlowMatchEulerDiscreteScheduler.set_timesteps makes them with a static shift: linear from 1 to the training grid's
    smallest sigma (itself already shifted: ``shift(1 / N)``), then shifted."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base = np.linspace(1.0, float(flow_shift(1.0 / num_train_timesteps, shift)), steps, dtype=np.float64)
    return np.append(flow_shift(base, shift), 0.0)


def flow_add_noise(x0: Any, eps: Any, sigma: Any) -> Any:
    s = _bcast(sigma, x0)
    return (1.0 - s) * x0 + s * eps


def flow_velocity(x0: Any, eps: Any) -> Any:
    return eps - x0


def flow_to_x0_eps(velocity: Any, x_sigma: Any, sigma: Any) -> tuple[Any, Any]:
    """Recover (x0, eps) from a velocity prediction at ``sigma``."""
    s = _bcast(sigma, x_sigma)
    return x_sigma - s * velocity, x_sigma + (1.0 - s) * velocity


def flow_schedule(num_train_timesteps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, sigma) per training timestep of a flow-matching model: ``sigma_t = shift((t + 1) / N)`` (diffusers'
    FlowMatchEulerDiscreteScheduler's training sigmas, timestep ``t + 1 = sigma * N`` before the shift) and
    ``alpha = 1 - sigma``. In this form a DDIM step ``x_s = alpha_s x0 + sigma_s eps`` with (x0, eps) from the
    velocity at t is exactly the flow Euler step ``x_t + (sigma_s - sigma_t) v`` (``tests/spec/test_param.py``)."""
    sigma = flow_shift(np.arange(1, num_train_timesteps + 1, dtype=np.float64) / num_train_timesteps, shift)
    return 1.0 - sigma, sigma


# ---------------------------------------------------------------- one schedule for both parameterisations
#
# Every training and sampling loop works on an integer timestep index t in [0, N) with x_t = alpha_t x0 + sigma_t eps
# (index -1: the clean end, alpha 1, sigma 0). A DDPM family has alpha = sqrt(abar), sigma = sqrt(1 - abar) and calls
# its network with t itself; a flow family has sigma_t = shift((t + 1) / N), alpha = 1 - sigma and calls its network
# with sigma_t * N (diffusers' FlowMatchEulerDiscreteScheduler timesteps). The distiller's solver grid, boundary
# scalings and re-noising are written once over (alpha, sigma) and hold for both.


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
    alpha: np.ndarray  # float64 [N]
    sigma: np.ndarray  # float64 [N]
    prediction_type: str
    flow_shift: float | None = None  # None: a DDPM schedule

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}; expected one of {PREDICTION_TYPES}")
        if (self.flow_shift is None) == (self.prediction_type == FLOW_PREDICTION):
            raise ValueError("a flow schedule predicts velocity (flow_prediction) and a DDPM schedule does not")

    def __len__(self) -> int:
        return len(self.alpha)

    @property
    def is_flow(self) -> bool:
        return self.flow_shift is not None

    def alpha_sigma(self, t: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(alpha_t, sigma_t) per index; a negative index is the clean end (1, 0)."""
        t = np.asarray(t, dtype=np.int64)
        idx = np.maximum(t, 0)
        return np.where(t < 0, 1.0, self.alpha[idx]), np.where(t < 0, 0.0, self.sigma[idx])

    def model_timestep(self, t: np.ndarray | int) -> np.ndarray:
        """What the network is called with at index ``t``: ``t`` itself (DDPM, int64), ``sigma_t * N`` (flow, float32)."""
        t = np.asarray(t, dtype=np.int64)
        if self.flow_shift is None:
            return t
        return (self.sigma[t] * len(self)).astype(np.float32)

    @classmethod
    def ddpm(cls, abar: np.ndarray, prediction_type: str = "epsilon") -> NoiseSchedule:
        alpha, sigma = alpha_sigma(np.asarray(abar, dtype=np.float64))
        return cls(alpha, sigma, prediction_type)

    @classmethod
    def flow(cls, num_train_timesteps: int, shift: float) -> NoiseSchedule:
        if not (math.isfinite(shift) and shift > 0):
            raise ValueError(f"flow shift must be a positive number, got {shift}")
        alpha, sigma = flow_schedule(num_train_timesteps, shift)
        return cls(alpha, sigma, FLOW_PREDICTION, float(shift))

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any], parameterisation: str) -> NoiseSchedule:
        """The schedule a model's ``scheduler/`` config defines, for its family's parameterisation ("ddpm" | "flow")."""
        n = int(config.get("num_train_timesteps", 1000))
        if parameterisation == "ddpm":
            return cls.ddpm(alphas_cumprod(config), str(config.get("prediction_type", "epsilon")))
        if parameterisation != "flow":
            raise ValueError(f"parameterisation must be 'ddpm' or 'flow', got {parameterisation!r}")
        if config.get("use_dynamic_shifting"):
            raise ValueError("the scheduler uses dynamic (resolution-dependent) shifting; turbo-edge trains and samples "
                             "flow models at a static shift: set use_dynamic_shifting false and a shift in scheduler_config.json")
        # FlowMatchEulerDiscreteScheduler names it ``shift``; UniPCMultistepScheduler with flow sigmas ``flow_shift``.
        shift = config.get("flow_shift") if config.get("use_flow_sigmas") else config.get("shift", 1.0)
        return cls.flow(n, float(1.0 if shift is None else shift))
