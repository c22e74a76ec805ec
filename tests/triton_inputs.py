"""The request tensors of a `turbo-edge serve` model over HTTP (tritonclient), shared by the serve tests: one list per
input, one value per row, [batch, 1] each; an input left as None is not sent (the model's default)."""

from __future__ import annotations

import numpy as np


def triton_inputs(prompts: list[str], seeds: list | None = None, steps: list | None = None, guidance: list | None = None,
                  seed_type: str = "INT64", num_frames: list | None = None) -> list:
    import tritonclient.http as httpclient

    dtypes = {"INT64": np.int64, "FP32": np.float32, "INT32": np.int32}
    arrays = [("prompt", np.array([[p.encode()] for p in prompts], dtype=object), "BYTES")]
    if seeds is not None:
        arrays.append(("seed", np.array([[s] for s in seeds], dtype=dtypes[seed_type]), seed_type))
    if steps is not None:
        arrays.append(("steps", np.array([[s] for s in steps], dtype=np.int32), "INT32"))
    if guidance is not None:
        arrays.append(("guidance", np.array([[g] for g in guidance], dtype=np.float32), "FP32"))
    if num_frames is not None:
        arrays.append(("num_frames", np.array([[n] for n in num_frames], dtype=np.int32), "INT32"))
    out = []
    for name, array, datatype in arrays:
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out
