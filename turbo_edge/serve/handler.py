"""One Triton request -> frames, through the torch-free runtime; the Python-backend model (``triton_model``) calls it.

Kept apart from the model file so it runs and is tested without Triton: it takes the request's tensors as numpy
arrays by input name (``None`` for an optional input left out) and returns the ``frames`` array. Row ``r`` of a
request is exactly ``Pipeline.generate(prompt[r], steps[r], seed[r], guidance[r])``: rows with different seeds
cannot share a sampler call (the runtime draws one seed's noise streams per call), so they run one after another;
parallelism comes from model instances. ``num_frames`` (a range bundle's clip length) is per request: the rows of one
request are one [B, F, H, W, 3] tensor, so a request whose rows ask for different lengths is refused in one line
(the dynamic batcher keeps requests apart, so requests at different lengths are served side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.serve.repository import INPUTS, RANGE_INPUTS
from turbo_edge.spec.errors import GenerationCancelled


@dataclass(frozen=True)
class Row:
    prompt: str
    seed: int
    steps: int | None  # None: the bundle's default_steps
    guidance: float | None  # None: the bundle's guidance
    frames: int | None = None  # None (or 0): the bundle's clip length


def _text(value: object, row: int) -> str:
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"prompt of row {row} is not UTF-8 text; send the prompt as UTF-8 bytes") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"prompt of row {row} is {type(value).__name__}, not text; send it as a BYTES tensor")


def request_rows(tensors: dict[str, np.ndarray | None]) -> list[Row]:
    """The rows of one request, from its tensors [B, 1] by name; ``ValueError`` for a malformed request."""
    prompts = tensors.get("prompt")
    if prompts is None:
        raise ValueError("the request has no 'prompt' input; send prompt as a BYTES tensor of shape [batch, 1]")
    rows = len(prompts)
    columns: dict[str, list] = {}
    for spec in INPUTS + RANGE_INPUTS:
        array = tensors.get(spec.name)
        if array is None:
            columns[spec.name] = [None] * rows
            continue
        if array.ndim != 2 or array.shape[1] != 1 or len(array) != rows:
            raise ValueError(f"input {spec.name!r} has shape {list(array.shape)}; every input is [batch, 1] with the same batch "
                             f"as 'prompt' ({rows})")
        columns[spec.name] = [v for v in array[:, 0]]
    return [Row(prompt=_text(p, r), seed=0 if s is None else int(s), steps=None if n is None else int(n),
                guidance=None if g is None else float(g), frames=None if f is None else int(f))
            for r, (p, s, n, g, f) in enumerate(zip(columns["prompt"], columns["seed"], columns["steps"], columns["guidance"], columns["num_frames"]))]


class Cancelled(RuntimeError):
    """The client gave up on the request (Triton reports it cancelled): its remaining rows are not generated."""


def run_request(pipe: Pipeline, tensors: dict[str, np.ndarray | None], cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """``frames`` uint8 [B, F, H, W, 3] for one request; the runtime's input rules raise their own messages.
    ``cancelled`` (the stub's ``request.is_cancelled``) is asked before each row and, by the runtime, before each
    denoiser call, so an abandoned request frees its instance within one call rather than after all its rows."""
    rows = request_rows(tensors)
    lengths = sorted({row.frames or 0 for row in rows})
    if len(lengths) > 1:
        raise ValueError(f"the rows of one request ask for different num_frames {lengths}; a request's clips share one length: "
                         "send each length as its own request")
    frames = []
    for r, row in enumerate(rows):
        if cancelled is not None and cancelled():
            raise Cancelled(f"the request was cancelled by its client after {r} of {len(rows)} rows")
        try:
            frames.append(pipe.generate(row.prompt, steps=row.steps, seed=row.seed, guidance=row.guidance, frames=row.frames,
                                        cancelled=cancelled))
        except GenerationCancelled as exc:
            raise Cancelled(f"the request was cancelled by its client in row {r + 1} of {len(rows)}: {exc}") from None
    return np.stack(frames).astype(np.uint8, copy=False)

