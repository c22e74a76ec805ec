"""What the distillation and pruning loops share around their maths: the autocast context of every network pass,
and the loss a multi-process run logs.

bf16 autocast goes through ``torch.autocast`` directly, on CPU as on CUDA: the same context Accelerate's
``mixed_precision="bf16"`` enters, without Accelerate's process-wide state, which refuses a second
``Accelerator`` with another precision in the same process (a test session, the demo's distil-then-prune).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

# Terms every rank computes at every step, whatever its batch: what a multi-process log averages over the ranks.
RANK_MEAN_METRICS = ("loss", "loss_cd")


def autocast(mixed_precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager[None]:
    """The context network passes run under: none for ``"no"``, ``torch.autocast`` bf16 for ``"bf16"``."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if mixed_precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {mixed_precision!r}")


AUTOCAST_WEIGHT_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def store_frozen_for_autocast(module: torch.nn.Module, mixed_precision: str) -> int:
    """Under bf16 autocast, keep a frozen network's linear and convolution weights in bf16 and every other parameter
    and buffer as its own fp32 copy, and return the weight bytes saved. Autocast casts exactly these ops' fp32 weights
    to bf16 at every call, so the frozen network computes in the same precision from half the memory (not bit-equal:
    oneDNN's GEMM for stored bf16 weights accumulates in another order than for autocast's cast copies). The copies
    matter as much: weights loaded from safetensors are views of one memory-mapped file, which stays resident while
    any view lives. A no-op (0) without bf16."""
    if mixed_precision != "bf16":
        return 0
    saved = 0
    with torch.no_grad():
        for sub in module.modules():
            lower = isinstance(sub, AUTOCAST_WEIGHT_MODULES)
            for name, param in list(sub.named_parameters(recurse=False)):
                if param.requires_grad:
                    raise ValueError(f"store_frozen_for_autocast: {name} of a {type(sub).__name__} is trainable; freeze the network first")
                if lower and param.dtype == torch.float32:
                    saved += param.numel() * 2
                    setattr(sub, name, torch.nn.Parameter(param.to(torch.bfloat16), requires_grad=False))
                else:
                    setattr(sub, name, torch.nn.Parameter(param.clone(), requires_grad=False))
            for name, buf in list(sub.named_buffers(recurse=False)):
                sub.register_buffer(name, buf.clone(), persistent=name not in sub._non_persistent_buffers_set)
    return saved


def adamw(groups: list[dict[str, Any]], lean: bool) -> torch.optim.AdamW:
    """The trainers' AdamW (no weight decay). ``lean`` steps it one tensor at a time: PyTorch's default multi-tensor
    (foreach) step allocates temporaries as large as all the trained weights together (the square roots of the second
    moments), 3.3 GB at once for a 0.9 B-parameter UNet; per tensor the largest is one weight's."""
    return torch.optim.AdamW(groups, weight_decay=0.0, foreach=False if lean else None)


def mean_over_ranks(accel: Any, metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` with ``RANK_MEAN_METRICS`` replaced by their mean over every process: each process's batch is the
    same size, so that is the global batch's loss, as one process with the whole batch logs it (rank 0's own loss is
    the loss of a batch ``world_size`` times smaller, its variance ``world_size`` times larger). Other terms stay rank 0's.
    A collective: every process calls it at the same steps."""
    if accel is None or accel.num_processes == 1:
        return metrics
    keys = [k for k in RANK_MEAN_METRICS if k in metrics]
    mean = accel.reduce(torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=accel.device), reduction="mean")
    return {**metrics, **dict(zip(keys, mean.tolist()))}
