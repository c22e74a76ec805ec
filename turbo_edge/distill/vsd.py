"""Variational score distillation (DOLLAR; as in DMD): a fake-score model tracks the student's own samples.

The fake score is a LoRA copy of the teacher trained with the ordinary denoising loss on the student's
single-step x0 (detached). For the student, at a random timestep, the difference between the fake and the
teacher's (guided) clean predictions points from the teacher's distribution toward the student's; the student
moves against it through ``0.5 * ||x0 - sg(x0 - grad)||^2``, whose gradient w.r.t. x0 is exactly ``grad``.
The gradient is normalised per sample by the mean |x0 - x0_teacher| (DMD), which keeps its scale steady.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from turbo_edge.core.consistency import coef
from turbo_edge.core.denoiser import call_denoiser, family_of
from turbo_edge.spec import param


class VariationalScore:
    def __init__(self, teacher_unet: torch.nn.Module, sched: param.NoiseSchedule, prediction_type: str, cfg: Any) -> None:
        from peft import LoraConfig, get_peft_model

        self.teacher = teacher_unet
        self.sched, self.ptype, self.cfg = sched, prediction_type, cfg
        fake = copy.deepcopy(teacher_unet).requires_grad_(False)
        targets = family_of(teacher_unet).lora_targets
        self.fake = get_peft_model(fake, LoraConfig(r=cfg.vsd_lora_rank, lora_alpha=cfg.vsd_lora_rank, target_modules=targets))
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.fake.parameters() if p.requires_grad]

    def _noised(self, x0: torch.Tensor, step: int, rank: int, stream: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, step, rank, stream])
        # Skip the very noisiest / cleanest 2 % where the scores carry little signal (DMD's range).
        t = rng.integers(int(0.02 * len(self.sched)), int(0.98 * len(self.sched)), size=x0.shape[0])
        eps = torch.from_numpy(rng.standard_normal(x0.shape)).float()
        alpha, sigma = (coef(v, x0) for v in self.sched.alpha_sigma(t))
        return param.add_noise(x0, eps, alpha, sigma), t, alpha, sigma

    def student_loss(self, x0_student: torch.Tensor, cond: torch.Tensor, step: int, rank: int) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = x0_student
        x_t, t, alpha, sigma = self._noised(x0.detach(), step, rank, 10)
        tt = torch.from_numpy(self.sched.model_timestep(t))
        with torch.no_grad():
            real = param.to_x0_eps(self.ptype, call_denoiser(self.teacher, x_t, tt, cond).float(), x_t, alpha, sigma)[0]
            fake = param.to_x0_eps(self.ptype, call_denoiser(self.fake, x_t, tt, cond).float(), x_t, alpha, sigma)[0]
            norm = (x0.detach() - real).abs().flatten(1).mean(dim=1).clamp(min=1e-6)
            grad = (fake - real) / param._bcast(norm, fake)
        self._last = (x0.detach(), cond.detach())
        loss = 0.5 * (x0 - (x0 - grad).detach()).square().flatten(1).sum(dim=1).mean() / x0[0].numel()
        return loss, {"vsd_grad_rms": float(grad.square().mean().sqrt())}

    def fake_score_loss(self, step: int, rank: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising loss of the fake score on the samples the last ``student_loss`` saw."""
        if self._last is None:
            raise RuntimeError("fake_score_loss needs a preceding student_loss")
        x0, cond = self._last
        x_t, t, alpha, sigma = self._noised(x0, step, rank, 11)
        eps = (x_t - param._bcast(alpha, x0) * x0) / param._bcast(sigma, x0)
        target = param.target_for(self.ptype, x0, eps, alpha, sigma)
        pred = call_denoiser(self.fake, x_t, torch.from_numpy(self.sched.model_timestep(t)), cond).float()
        loss = (pred - target).square().mean()
        return loss, {"loss_fake_score": loss.item()}
