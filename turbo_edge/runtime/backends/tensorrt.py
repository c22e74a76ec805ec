"""TensorRT backend (NVIDIA GPUs): deserialised engine, ``execute_async_v3`` on a CUDA stream, CUDA-graph replay.

Only a GPU machine can run this; on CPU its logic is tested with fakes of the two libraries (``api`` argument).
Per ``Binding``: its own execution context (so its input shapes are set once and never change), device
buffers whose addresses are bound with ``set_tensor_address``, and a CUDA stream. The first ``infer`` runs
``execute_async_v3`` plainly (TensorRT needs one enqueue after shapes are set, before capture); the second
captures the enqueue into a CUDA graph and every later call replays it (``cuda_graph=True``, static shapes).
Host<->device copies stay outside the graph because pageable numpy memory cannot be captured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.runtime.backends import Backend, Binding, Shapes
from turbo_edge.spec.bundle import Bundle
from turbo_edge.spec.errors import BackendUnavailableError


class CudaApi:
    """The handful of CUDA runtime calls used here, over cuda-python (``cuda.bindings.runtime`` or ``cuda.cudart``)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError as e:
                raise BackendUnavailableError("tensorrt needs cuda-python and an NVIDIA GPU: pip install 'turbo-edge[gpu]'") from e
        self.rt = cudart

    def _ok(self, result: tuple) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def stream(self) -> Any:
        return self._ok(self.rt.cudaStreamCreate())

    def htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def synchronize(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def begin_capture(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamBeginCapture(stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))

    def end_capture(self, stream: Any) -> Any:
        graph = self._ok(self.rt.cudaStreamEndCapture(stream))
        return self._ok(self.rt.cudaGraphInstantiate(graph, 0))

    def launch(self, graph_exec: Any, stream: Any) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph_exec, stream))


def _import_trt():
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(
            "the tensorrt backend needs TensorRT and an NVIDIA GPU (pip install 'turbo-edge[gpu]' with NVIDIA's index); "
            "on CPU use backend 'ort-cpu' or 'openvino'"
        ) from e
    return tensorrt


@dataclass
class TrtState:
    context: Any
    stream: Any
    device: dict[str, int]
    runs: int = 0
    graph: Any = field(default=None)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, threads: int = 1, cuda_graph: bool = True, trt: Any = None, cuda: Any = None) -> None:
        super().__init__(threads)
        self.cuda_graph = cuda_graph
        self._trt, self._cuda = trt, cuda  # injected fakes in tests; real libraries imported in load()

    def model_file(self, bundle: Bundle, component: str, precision: str) -> Path:
        """The engine ``turbo-edge engine`` built for this component and precision, as the manifest records it
        (engines build from ONNX graphs: an OpenVINO IR variant is refused)."""
        bundle.require_format(component, precision, self.formats, self.name)
        return bundle.engine_path(component, precision)

    def load(self, path: Path) -> None:
        trt = self._trt or _import_trt()
        self._cuda = self._cuda or CudaApi()
        if Path(path).suffix != ".plan":
            raise BackendUnavailableError(f"the tensorrt backend runs engine plans (engines/*.plan), got {path}; build them with `turbo-edge engine --bundle B`")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(f"TensorRT could not deserialise {path}: engines are specific to the TensorRT version and GPU; rebuild it here")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.session = self.engine

    def input_dtypes(self) -> dict[str, np.dtype]:
        return {n: self._dtypes[n] for n in self._inputs}

    def allocate(self, input_shapes: Shapes, output_shapes: Shapes) -> Binding:
        context = self.engine.create_execution_context()
        inputs = {n: np.zeros(s, dtype=self._dtypes[n]) for n, s in input_shapes.items()}
        outputs = {n: np.zeros(s, dtype=self._dtypes[n]) for n, s in output_shapes.items()}
        device = {}
        for name, arr in {**inputs, **outputs}.items():
            if name in inputs and not context.set_input_shape(name, arr.shape):
                raise ValueError(f"shape {arr.shape} of {name} is outside the engine's optimisation profile")
            device[name] = self._cuda.malloc(arr.nbytes)
            context.set_tensor_address(name, device[name])
        return Binding(inputs, outputs, handle=TrtState(context, self._cuda.stream(), device))

    def infer(self, binding: Binding) -> None:
        state: TrtState = binding.handle
        for name, arr in binding.inputs.items():
            self._cuda.htod(state.device[name], arr, state.stream)
        if state.graph is not None:
            self._cuda.launch(state.graph, state.stream)
        elif self.cuda_graph and state.runs >= 1:
            self._cuda.begin_capture(state.stream)
            state.context.execute_async_v3(state.stream)
            state.graph = self._cuda.end_capture(state.stream)
            self._cuda.launch(state.graph, state.stream)
        elif not state.context.execute_async_v3(state.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        for name, arr in binding.outputs.items():
            self._cuda.dtoh(arr, state.device[name], state.stream)
        self._cuda.synchronize(state.stream)
        state.runs += 1

    def release(self, binding: Binding) -> None:
        for ptr in binding.handle.device.values():
            self._cuda.free(ptr)
