"""Seeded Gaussian noise from a counter-based generator, identical in the Python and C++ runtimes.

Element ``i`` of the tensor for ``(seed, stream)`` is a pure function of those three integers, so noise does
not depend on batch size, order of calls or platform RNG libraries. Definition (all arithmetic mod 2**64):

    G = 0x9E3779B97F4A7C15
    mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;  z ^ (z >> 31)
    key      = mix(seed + (stream + 1) * G)
    h(c)     = mix(key + (c + 1) * G)
    u1       = ((h(2i) >> 11) + 1) * 2**-53          # in (0, 1]
    u2       =  (h(2i + 1) >> 11) * 2**-53            # in [0, 1)
    normal_i = float32( sqrt(-2 ln u1) * cos(2 pi u2) )   # Box-Muller, computed in float64

``runtime/cpp/src/noise.cpp`` implements the same lines.
"""

from __future__ import annotations

import numpy as np

_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def normal(seed: int, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape`` for ``(seed, stream)``; both must be in [0, 2**63)."""
    if not (0 <= seed < 2**63 and 0 <= stream < 2**63):
        raise ValueError(f"seed and stream must be in [0, 2**63), got seed={seed} stream={stream}")
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        key = _mix(np.array([seed], dtype=np.uint64) + (np.uint64(stream) + np.uint64(1)) * _G)
        counters = np.arange(2 * n, dtype=np.uint64)
        h = _mix(key + (counters + np.uint64(1)) * _G)
    u1 = ((h[0::2] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    u2 = (h[1::2] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32).reshape(shape)


def stream_id(prompt_index: int, draw: int) -> int:
    """The stream of prompt ``prompt_index``'s ``draw``-th noise tensor: draw 0 is the initial latent noise,
    draw j >= 1 the noise a multistep consistency sampler injects after its step j - 1."""
    if prompt_index < 0 or not 0 <= draw < 2**31:
        raise ValueError(f"prompt_index must be >= 0 and draw in [0, 2**31), got {prompt_index}, {draw}")
    return prompt_index + (draw << 32)
