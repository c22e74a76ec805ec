"""ONNX Runtime backends (CPU and CUDA) with IOBinding onto preallocated numpy buffers.

Session options, chosen deliberately:
- ``intra_op_num_threads = threads`` (from ``RuntimeConfig``), ``inter_op_num_threads = 1`` and sequential
  execution: these graphs are chains, so parallelism across nodes buys nothing and oversubscribes cores.
- ``ORT_ENABLE_ALL`` graph optimisation (constant folding, fusions, layout transforms); optimised once at load.
- IOBinding binds every input and output to a numpy buffer allocated once per shape set, so ``run`` neither
  copies nor allocates outputs: the sampler writes inputs in place and reads outputs in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from turbo_edge.runtime.backends import Backend, Binding, Shapes, numpy_dtype
from turbo_edge.spec.errors import BackendUnavailableError


def _import_ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise BackendUnavailableError("the ort backends need onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from e
    return onnxruntime


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    provider = "CPUExecutionProvider"

    def _check_provider(self, ort) -> None:
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailableError(f"{self.provider} is not available in this onnxruntime build")

    def load(self, path: Path) -> None:
        ort = _import_ort()
        self._check_provider(ort)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=[self.provider])

    def input_dtypes(self) -> dict[str, np.dtype]:
        return {i.name: numpy_dtype(i.type) for i in self.session.get_inputs()}

    def allocate(self, input_shapes: Shapes, output_shapes: Shapes) -> Binding:
        io = self.session.io_binding()
        dtypes = self.input_dtypes()
        inputs = {name: np.zeros(shape, dtype=dtypes[name]) for name, shape in input_shapes.items()}
        out_types = {o.name: numpy_dtype(o.type) for o in self.session.get_outputs()}
        outputs = {name: np.zeros(shape, dtype=out_types[name]) for name, shape in output_shapes.items()}
        # Bound by address: later in-place writes to these arrays are what the next run reads.
        for name, arr in inputs.items():
            io.bind_input(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        for name, arr in outputs.items():
            io.bind_output(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        return Binding(inputs, outputs, handle=io)

    def infer(self, binding: Binding) -> None:
        self.session.run_with_iobinding(binding.handle)


class OrtCudaBackend(OrtCpuBackend):
    """CUDA provider; inputs and outputs stay in host buffers (ORT copies them), which keeps the interface uniform."""

    name = "ort-cuda"
    provider = "CUDAExecutionProvider"

    def _check_provider(self, ort) -> None:
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                "ort-cuda needs onnxruntime-gpu and an NVIDIA GPU (found providers "
                f"{ort.get_available_providers()}): pip install 'turbo-edge[gpu]' on a CUDA machine, or use backend 'ort-cpu' / 'openvino'"
            )
