"""FLOPs of a PyTorch call, counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of the
matmuls, convolutions and attention; element-wise ops are not counted): the torch side of
``turbo_edge.runtime.flops.onnx_flops``, which counts the exported graph the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_flash_attention_flop(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """Attention kernels the counter's own table misses: on CPU, ``scaled_dot_product_attention`` dispatches to
    ``_scaled_dot_product_flash_attention_for_cpu``, which FlopCounterMode (torch 2.13) does not count, so a UNet's
    attention products would be left out (4 % of the builtin student's UNet)."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _cpu_flash_attention_flop}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (run once, under no_grad, the counter's table not printed)."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())


__all__ = ["count_flops"]
