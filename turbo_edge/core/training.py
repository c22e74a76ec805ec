"""What the distillation and pruning loops share around their maths: the autocast context of every network pass.

bf16 autocast goes through ``torch.autocast`` directly, on CPU as on CUDA: the same context Accelerate's
``mixed_precision="bf16"`` enters, without Accelerate's process-wide state, which refuses a second
``Accelerator`` with another precision in the same process (a test session, the demo's distil-then-prune).
"""

from __future__ import annotations

import contextlib

import torch


def autocast(mixed_precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager[None]:
    """The context network passes run under: none for ``"no"``, ``torch.autocast`` bf16 for ``"bf16"``."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if mixed_precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {mixed_precision!r}")
