"""The sampler contract: how a model is sampled, as plain numbers. One dataclass for the whole toolchain.

The distiller writes it into the student's model card, export completes it with the noise schedule and writes
it into the bundle's manifest, and both runtimes (Python and ``runtime/cpp/src/bundle.cpp``) run from it, so no
stage re-derives a schedule with guessed defaults. Timesteps come from ``spec.param`` (the one parameterisation
module): trailing DDIM spacing for a teacher, the LCM grid for a consistency student.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from turbo_edge.spec import param
from turbo_edge.spec.errors import BundleError

SAMPLER_KINDS = ("ddim_cfg", "consistency", "flow_euler_cfg")
# A flow-matching contract names its static shift (``flow_shift``; prediction_type flow_prediction); a DDPM one carries
# ``alphas_cumprod``. A flow student is ``consistency`` over integer timestep indices of ``param.flow_schedule`` (the
# distiller's convention, main's ``param.NoiseSchedule.flow``); a flow teacher is ``flow_euler_cfg``, whose Euler grid
# is not on those indices, so it carries per step count the sigmas (ending at 0) and the float timesteps
# ``sigma * num_train_timesteps`` the network is fed.
CFG_KINDS = ("ddim_cfg", "flow_euler_cfg")
# The one source of each default a model without its own value takes (model cards, samplers, export, the CLI).
DEFAULT_TEACHER_STEPS = 50  # a teacher's sampler steps (DDIM, or a flow solver)
DEFAULT_GUIDANCE = 3.0  # classifier-free guidance scale
DEFAULT_FPS = 8  # frames per second a clip is written and exported at
TEACHER_STEPS = (10, 25, 50)
STUDENT_STEPS = (1, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """What a runtime needs to sample a model. ``alphas_cumprod`` is None in a model card (its scheduler config
    beside it defines the schedule) and filled by ``with_schedule`` when export writes the bundle."""

    kind: str  # "ddim_cfg" (teacher) or "consistency" (student / pruned student)
    prediction_type: str
    num_train_timesteps: int
    default_steps: int
    timesteps: dict[int, tuple[int, ...]]  # step count -> descending timesteps
    guidance: float = DEFAULT_GUIDANCE
    w_embedding_dim: int | None = None  # the student's guidance embedding (timestep_cond); None: guidance distilled in
    timestep_scaling: float = 10.0
    sigma_data: float = 0.5
    origin_steps: int | None = None  # the teacher ODE solver's grid the student's timesteps are picked from
    alphas_cumprod: np.ndarray | None = dataclasses.field(default=None, compare=False)  # float64 [num_train_timesteps]
    final_alpha_cumprod: float = 1.0  # abar "before t=0", where DDIM's last step lands
    # A flow-matching model's static shift (its schedule is ``param.flow_schedule(num_train_timesteps, flow_shift)``, no
    # alphas_cumprod); None for a DDPM schedule.
    flow_shift: float | None = None
    sigmas: dict[int, tuple[float, ...]] | None = dataclasses.field(default=None, compare=False)  # flow_euler_cfg: steps -> steps + 1 sigmas

    def __post_init__(self) -> None:
        if self.kind not in SAMPLER_KINDS:
            raise BundleError(f"sampler kind {self.kind!r} is not one this toolchain runs {SAMPLER_KINDS}")
        if self.prediction_type not in param.PREDICTION_TYPES:
            raise BundleError(f"sampler prediction_type {self.prediction_type!r} is not one of {param.PREDICTION_TYPES}")
        if (self.flow_shift is not None) != (self.prediction_type == param.FLOW_PREDICTION):
            raise BundleError(f"sampler prediction_type {self.prediction_type!r} and flow_shift {self.flow_shift} disagree: "
                              "a flow_prediction model names its shift, a DDPM one none")
        if self.default_steps not in self.timesteps:
            raise BundleError(f"sampler default_steps {self.default_steps} has no timesteps (it has {sorted(self.timesteps)})")
        if self.kind == "flow_euler_cfg" and self.flow_shift is None:
            raise BundleError("sampler kind 'flow_euler_cfg' is a flow-matching sampler: the contract needs its flow_shift")
        if self.kind == "flow_euler_cfg":
            if not self.sigmas or set(self.sigmas) != set(self.timesteps):
                raise BundleError("a flow sampler contract needs a sigmas table for every step count it lists")
            bad = [s for s, v in self.sigmas.items() if len(v) != s + 1 or len(self.timesteps[s]) != s]
            if bad:
                raise BundleError(f"flow sampler contract: steps {bad} need steps + 1 sigmas and steps timesteps")

    @property
    def uses_cfg(self) -> bool:
        return self.kind in CFG_KINDS

    @property
    def parameterisation(self) -> str:
        """"flow" for a flow-matching contract (it names its shift), else "ddpm"."""
        return "ddpm" if self.flow_shift is None else "flow"

    @property
    def supported_steps(self) -> tuple[int, ...]:
        return tuple(sorted(self.timesteps))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def ddim_cfg(cls, scheduler_config: dict[str, Any], default_steps: int = DEFAULT_TEACHER_STEPS, supported_steps: Iterable[int] = TEACHER_STEPS,
                 guidance: float = DEFAULT_GUIDANCE) -> SamplerSpec:
        """A teacher's 50-step DDIM + CFG contract (trailing spacing), from its diffusers scheduler config."""
        n = int(scheduler_config.get("num_train_timesteps", 1000))
        steps = sorted({int(default_steps), *(int(s) for s in supported_steps)})
        return cls(kind="ddim_cfg", prediction_type=str(scheduler_config.get("prediction_type", "epsilon")), num_train_timesteps=n,
                   default_steps=int(default_steps), timesteps={s: tuple(int(t) for t in param.ddim_timesteps(n, s)) for s in steps},
                   guidance=float(guidance))

    @classmethod
    def consistency(cls, scheduler_config: dict[str, Any], origin_steps: int, w_embedding_dim: int | None, default_steps: int = 4,
                    supported_steps: Iterable[int] = STUDENT_STEPS, guidance: float = DEFAULT_GUIDANCE, timestep_scaling: float = 10.0,
                    sigma_data: float = 0.5, parameterisation: str = "ddpm") -> SamplerSpec:
        """A consistency student's contract: timesteps (indices) picked from the teacher's ``origin_steps`` solver grid;
        a flow-matching teacher's student carries the schedule's shift."""
        sched = param.NoiseSchedule.from_scheduler_config(scheduler_config, parameterisation)
        n = len(sched)
        steps = sorted({int(default_steps), *(int(s) for s in supported_steps)})
        return cls(kind="consistency", prediction_type=sched.prediction_type, num_train_timesteps=n, flow_shift=sched.flow_shift,
                   default_steps=int(default_steps), guidance=float(guidance), w_embedding_dim=w_embedding_dim,
                   timestep_scaling=float(timestep_scaling), sigma_data=float(sigma_data), origin_steps=int(origin_steps),
                   timesteps={s: tuple(int(t) for t in param.consistency_timesteps(n, origin_steps, s)) for s in steps})

    @classmethod
    def flow_euler_cfg(cls, scheduler_config: dict[str, Any], default_steps: int = DEFAULT_TEACHER_STEPS, supported_steps: Iterable[int] = TEACHER_STEPS,
                       guidance: float = DEFAULT_GUIDANCE) -> SamplerSpec:
        """A flow-matching teacher's contract: Euler over the static-shifted sigmas (``param.flow_sigmas``, as diffusers'
        FlowMatchEulerDiscreteScheduler makes them) with CFG, from its scheduler config (``shift``, or UniPC's ``flow_shift``)."""
        n = int(scheduler_config.get("num_train_timesteps", 1000))
        shift = float(scheduler_config.get("shift", scheduler_config.get("flow_shift", 1.0)) or 1.0)
        steps = sorted({int(default_steps), *(int(s) for s in supported_steps)})
        tables = {s: flow_tables(s, shift, n) for s in steps}
        return cls(kind="flow_euler_cfg", prediction_type=param.FLOW_PREDICTION, num_train_timesteps=n, default_steps=int(default_steps),
                   timesteps={s: t for s, (t, _) in tables.items()}, guidance=float(guidance), flow_shift=shift,
                   sigmas={s: sig for s, (_, sig) in tables.items()})

    def with_steps(self, default_steps: int | None = None, supported_steps: Iterable[int] | None = None,
                   guidance: float | None = None) -> SamplerSpec:
        """The same contract at other step counts (export's ``--default-steps`` / ``--supported-steps``)."""
        default = int(default_steps or self.default_steps)
        steps = sorted({default, *(int(s) for s in (supported_steps or self.supported_steps))})
        table = {}
        sigmas = dict(self.sigmas or {})
        for s in steps:
            if s in self.timesteps:
                table[s] = self.timesteps[s]
            elif self.kind == "flow_euler_cfg" and self.flow_shift is not None:
                table[s], sigmas[s] = flow_tables(s, self.flow_shift, self.num_train_timesteps)
            elif self.kind == "flow_euler_cfg":
                raise BundleError(f"this flow contract has no {s}-step sigmas (it has {list(self.supported_steps)}); re-export with those steps")
            elif self.kind == "ddim_cfg":
                table[s] = tuple(int(t) for t in param.ddim_timesteps(self.num_train_timesteps, s))
            elif self.origin_steps:
                table[s] = tuple(int(t) for t in param.consistency_timesteps(self.num_train_timesteps, self.origin_steps, s))
            else:
                raise BundleError(f"this student's card has no solver grid (origin_steps) to make {s}-step timesteps; use {list(self.supported_steps)}")
        return dataclasses.replace(self, default_steps=default, timesteps=table, guidance=self.guidance if guidance is None else float(guidance),
                                   sigmas={s: sigmas[s] for s in steps} if self.kind == "flow_euler_cfg" else None)

    def schedule(self, scheduler_config: dict[str, Any] | None = None) -> param.NoiseSchedule:
        """The noise schedule the contract samples on: a flow shift's, the carried ``alphas_cumprod``, or (a card's
        DDPM contract) the one ``scheduler_config`` defines."""
        if self.flow_shift is not None:
            return param.NoiseSchedule.flow(self.num_train_timesteps, self.flow_shift)
        if self.alphas_cumprod is not None:
            return param.NoiseSchedule.ddpm(self.alphas_cumprod, self.prediction_type)
        if scheduler_config is None:
            raise BundleError("this sampler contract carries no noise schedule (alphas_cumprod); give the model's scheduler config")
        return param.NoiseSchedule.ddpm(param.alphas_cumprod(scheduler_config), self.prediction_type)

    def with_schedule(self, scheduler_config: dict[str, Any]) -> SamplerSpec:
        """The contract with its noise schedule's numbers, as a bundle carries it (the runtime computes none). A flow
        contract's schedule is its shift (and a flow Euler contract carries its sigmas already)."""
        if self.flow_shift is not None:
            return self
        abar = param.alphas_cumprod(scheduler_config)
        if len(abar) != self.num_train_timesteps:
            raise BundleError(f"scheduler has {len(abar)} timesteps, the sampler contract {self.num_train_timesteps}")
        # DDIM's last step goes to abar = 1 (set_alpha_to_one) or to abar[0]: the runtime needs it to land on x0.
        final = 1.0 if scheduler_config.get("set_alpha_to_one", True) else float(abar[0])
        return dataclasses.replace(self, alphas_cumprod=abar, final_alpha_cumprod=final)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "prediction_type": self.prediction_type, "num_train_timesteps": self.num_train_timesteps,
            "default_steps": self.default_steps, "supported_steps": list(self.supported_steps),
            "timesteps": {str(k): list(v) for k, v in sorted(self.timesteps.items())},
            "guidance": self.guidance, "uses_cfg": self.uses_cfg, "w_embedding_dim": self.w_embedding_dim,
            "timestep_scaling": self.timestep_scaling, "sigma_data": self.sigma_data,
        }
        if self.origin_steps is not None:
            out["origin_steps"] = self.origin_steps
        if self.flow_shift is not None:  # written only for flow models: DDPM contracts stay as they were
            out["flow_shift"] = self.flow_shift
        if self.kind == "flow_euler_cfg":
            out["sigmas"] = {str(k): list(v) for k, v in sorted((self.sigmas or {}).items())}
            out["timesteps"] = {str(k): [float(t) for t in v] for k, v in sorted(self.timesteps.items())}
        if self.alphas_cumprod is not None:
            out["alphas_cumprod"] = [float(a) for a in self.alphas_cumprod]
            out["final_alpha_cumprod"] = self.final_alpha_cumprod
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], guidance: float | None = None) -> SamplerSpec:
        """Read a contract from a manifest or a card. ``guidance`` fills a card written before it carried one."""
        if not isinstance(d, dict):
            raise BundleError(f"sampler contract must be a JSON object, got {type(d).__name__}")
        try:
            flow = d.get("kind") == "flow_euler_cfg"
            number = float if flow else int  # a flow Euler contract's timesteps are sigma * num_train_timesteps, not indices
            timesteps = {int(k): tuple(number(t) for t in v) for k, v in d["timesteps"].items()}
            abar = d.get("alphas_cumprod")
            sigmas = {int(k): tuple(float(s) for s in v) for k, v in d["sigmas"].items()} if flow else None
            return cls(
                kind=str(d["kind"]), prediction_type=str(d["prediction_type"]), num_train_timesteps=int(d["num_train_timesteps"]),
                default_steps=int(d["default_steps"]), timesteps=timesteps,
                guidance=float(d["guidance"] if "guidance" in d else (DEFAULT_GUIDANCE if guidance is None else guidance)),
                w_embedding_dim=None if d.get("w_embedding_dim") is None else int(d["w_embedding_dim"]),
                timestep_scaling=float(d.get("timestep_scaling", 10.0)), sigma_data=float(d.get("sigma_data", 0.5)),
                origin_steps=None if d.get("origin_steps") is None else int(d["origin_steps"]),
                alphas_cumprod=None if abar is None else np.asarray(abar, dtype=np.float64),
                final_alpha_cumprod=float(d.get("final_alpha_cumprod", 1.0)),
                flow_shift=None if d.get("flow_shift") is None else float(d["flow_shift"]), sigmas=sigmas,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"sampler contract is malformed ({type(exc).__name__}: {exc}); re-export the bundle or re-train the model") from exc


def flow_tables(steps: int, shift: float, num_train_timesteps: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(timesteps, sigmas) of a flow Euler sampler at ``steps``: the sigmas as diffusers holds them (float32, ending at 0)
    and each step's timestep ``sigma * num_train_timesteps`` in float32, as FlowMatchEulerDiscreteScheduler feeds it."""
    sigmas = param.flow_sigmas(steps, shift, num_train_timesteps).astype(np.float32)
    timesteps = sigmas[:-1] * np.float32(num_train_timesteps)
    return tuple(float(t) for t in timesteps), tuple(float(s) for s in sigmas)
