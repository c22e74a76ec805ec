"""PyTorch module -> ONNX file, following a component's contract.

Exporter choice: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) at opset 17.
It is deprecated, and picked deliberately: measured here (docs/decisions.md, "the TorchScript ONNX exporter"), its UNet3D graph ran in ONNX Runtime
with dynamic batch and frames and matched PyTorch to ~1e-6, while the dynamo exporter's graph failed in ORT
at batch >= 2 ("invalid expand shape": diffusers' ``encoder_hidden_states.repeat_interleave(num_frames, 0)``
became an Expand with a baked shape), and at opset 17 produced an invalid Split. Revisit when the dynamo
exporter handles that pattern (a test exporting at batch 1 and running at batch 2 would catch a regression).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.export.contracts import Contract

log = logging.getLogger(__name__)

# protobuf cannot serialise a message over 2 GiB; above this, weights go to a side file (``<name>.data``).
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26


def export_onnx(module: Any, contract: Contract, path: Path, opset: int = 17, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Export ``module`` with the contract's names and dynamic axes; return the files written (graph + data)."""
    import onnx
    import torch

    feeds = contract.sample_inputs("opt")
    args = tuple(torch.from_numpy(feeds[t.name]) for t in contract.inputs)
    # The exporter scatters one file per weight beside a >2 GB graph: export into scratch, re-save as one file.
    scratch = path.parent / f".scratch_{path.stem}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python bools in diffusers' shape checks
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(scratch / "model.onnx"),
                input_names=[t.name for t in contract.inputs],
                output_names=[t.name for t in contract.outputs],
                dynamic_axes=contract.dynamic_axes(),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    try:
        return save_model(onnx.load(str(scratch / "model.onnx")), path, external_data_threshold)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def save_model(model: Any, path: Path, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Save an ``onnx.ModelProto``, moving weights to ``<name>.data`` when the model is over the threshold."""
    import onnx

    size = _initializer_bytes(model)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    if size > external_data_threshold:
        log.info("%s: %.1f MB of weights > threshold, writing external data %s", path.name, size / 1e6, data.name)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name, size_threshold=0)
        return [path, data]
    onnx.save_model(model, str(path))
    return [path]


def _initializer_bytes(model: Any) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


def ort_session(path: Path, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def run_ort(path: Path, feeds: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    sess = ort_session(path, threads)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_torch(module: Any, contract: Contract, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[t.name]) for t in contract.inputs))
    outs = out if isinstance(out, tuple) else (out,)
    return {t.name: o.float().numpy() for t, o in zip(contract.outputs, outs)}
