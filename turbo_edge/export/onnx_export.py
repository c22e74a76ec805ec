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

    feeds = contract.sample_inputs(contract.trace_point)
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
        scattered = onnx.load(str(scratch / "model.onnx"), load_external_data=False)
        if not _external_tensors(scattered):
            return save_model(onnx.load(str(scratch / "model.onnx")), path, external_data_threshold)
        return merge_external_data(scattered, scratch, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _external_tensors(model: Any) -> list[Any]:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def merge_external_data(model: Any, source_dir: Path, path: Path) -> list[Path]:
    """Save ``model`` (loaded without its external data) at ``path`` with every external tensor's bytes copied, file to
    file, into one ``<name>.data``: the weights are never all in memory (``onnx.load`` + ``save_model`` would hold them
    once as the loaded proto and again while writing, ~2x a multi-GB graph on top of the exporter's model)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    data = path.with_name(path.name + ".data")
    offset = 0
    with data.open("wb") as out:
        for tensor in _external_tensors(model):
            info = ExternalDataInfo(tensor)
            with (source_dir / info.location).open("rb") as src:
                src.seek(info.offset or 0)
                remaining = info.length if info.length else None
                written = 0
                while remaining is None or remaining > 0:
                    chunk = src.read(1 << 24 if remaining is None else min(1 << 24, remaining))
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
                    remaining = None if remaining is None else remaining - len(chunk)
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(written))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += written
    log.info("%s: %.1f MB of weights written to external data %s", path.name, offset / 1e6, data.name)
    onnx.save_model(model, str(path))
    return [path, data]


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
