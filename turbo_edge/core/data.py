"""World clips as the VAE's input: uint8 RGB frames to float pixels in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch


def to_pixels(clips_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(clips_uint8)).float().div(127.5).sub(1.0)
    return x.movedim(-1, -3).contiguous()
