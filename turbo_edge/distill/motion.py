"""Motion guidance (T2V-Turbo-v2, after MotionClone): steer the teacher's ODE step toward the training clip's motion.

The energy compares the teacher's temporal self-attention maps (frame-to-frame, per spatial position, decoder
blocks) on the current noisy latents with those of the training clip seen at a low noise level; only each
query's dominant key in the reference counts (a sparse mask, as MotionClone's top-k). Its gradient, scaled to
unit RMS per sample so ``strength`` is in units of the noise's standard deviation, moves the teacher's clean
prediction ``x0 <- x0 - strength * sigma_t * grad E`` for the noisiest solver steps, and epsilon is recomputed
to match. T2V-Turbo-v2 shifts epsilon instead; with the cosine schedule's near-zero alpha at t = 999 that shift
is amplified by sigma/alpha in the DDIM step, while the x0 form stays bounded (the two agree up to that factor).
"""

from __future__ import annotations

import numpy as np
import torch

from turbo_edge.core.denoiser import call_denoiser
from turbo_edge.spec import param


class _AttentionStore:
    def __init__(self) -> None:
        self.active = False
        self.maps: list[torch.Tensor] = []


class CapturingAttnProcessor:
    """Plain scaled-dot-product attention that also records its probabilities when the store is active.

    diffusers' fused processors never materialise the probabilities, so temporal attention layers get this one.
    """

    def __init__(self, store: _AttentionStore) -> None:
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        if self.store.active:
            self.store.maps.append(probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install_capture(unet: torch.nn.Module, store: _AttentionStore) -> int:
    """Give every decoder temporal self-attention (``up_blocks.*.temp_attentions.*.attn1``) the capturing processor."""
    count = 0
    for name, module in unet.named_modules():
        if name.startswith("up_blocks") and ".temp_attentions." in name and name.endswith("attn1"):
            module.set_processor(CapturingAttnProcessor(store))
            count += 1
    if count == 0:
        raise ValueError("the UNet has no decoder temporal attention layers (up_blocks.*.temp_attentions.*.attn1) to guide")
    return count


class MotionGuidance:
    def __init__(self, teacher_unet: torch.nn.Module, sched: param.NoiseSchedule, prediction_type: str, reference_t: int = 200) -> None:
        self.unet = teacher_unet
        self.sched = sched
        self.ptype = prediction_type
        self.reference_t = reference_t
        self.store = _AttentionStore()
        self.layers = install_capture(teacher_unet, self.store)

    def _maps(self, x: torch.Tensor, t: np.ndarray, cond: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.store.maps, self.store.active = [], True
        try:
            out = call_denoiser(self.unet, x, torch.from_numpy(self.sched.model_timestep(t)), cond)
        finally:
            self.store.active = False
        return self.store.maps, out

    def energy(self, x_t: torch.Tensor, t: np.ndarray, reference: torch.Tensor, cond: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per-sample energy [B]: masked squared difference of temporal attention maps (decoder layers)."""
        t_ref = np.full(len(t), self.reference_t)
        a, s = (torch.from_numpy(v).float() for v in self.sched.alpha_sigma(t_ref))
        with torch.no_grad():
            ref_maps, _ = self._maps(param.add_noise(reference, torch.randn(reference.shape, generator=gen), a, s), t_ref, cond)
        maps, _ = self._maps(x_t, t, cond)
        b = x_t.shape[0]
        total = x_t.new_zeros(b)
        for m, r in zip(maps, ref_maps, strict=True):
            mask = torch.zeros_like(r).scatter_(-1, r.argmax(dim=-1, keepdim=True), 1.0)
            diff = (mask * (m - r)).square().reshape(b, -1).sum(dim=1)
            total = total + diff / mask.reshape(b, -1).sum(dim=1).clamp(min=1)
        return total

    def guide(
        self, x_t: torch.Tensor, reference: torch.Tensor, t: np.ndarray, cond: torch.Tensor, x0: torch.Tensor,
        eps: torch.Tensor, selected: np.ndarray, strength: float, seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Return (x0, eps) with the guidance applied to the ``selected`` samples, and their mean energy."""
        sel = torch.from_numpy(np.flatnonzero(selected))
        x = x_t[sel].detach().requires_grad_(True)
        gen = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            e = self.energy(x, t[sel.numpy()], reference[sel], cond[sel], gen)
            (grad,) = torch.autograd.grad(e.sum(), x)
        rms = grad.flatten(1).square().mean(dim=1).sqrt().clamp(min=1e-12)
        grad = grad / param._bcast(rms, grad)
        alpha, sigma = (torch.from_numpy(v).float() for v in self.sched.alpha_sigma(t[sel.numpy()]))
        x0, eps = x0.clone(), eps.clone()
        x0[sel] = x0[sel] - strength * param._bcast(sigma, grad) * grad
        eps[sel] = (x_t[sel] - param._bcast(alpha, grad) * x0[sel]) / param._bcast(sigma, grad)
        return x0, eps, float(e.mean().detach())
