"""OpenVINO CPU backend: the fast int8 target here (it runs the bundle's Q/DQ graph with int8 kernels, or the
OpenVINO IR int8 variant that large UNets are exported to: ``int8_format=openvino``).

Each shape set gets its own compiled model (the ONNX is reshaped to static shapes first: static shapes let
the CPU plugin pick its kernels once), cached for the life of the backend; each ``Binding`` owns one
``InferRequest`` whose input and output tensors wrap the binding's numpy buffers (no copies).
Properties: ``INFERENCE_NUM_THREADS = threads``, one stream, ``LATENCY`` hint, and
``INFERENCE_PRECISION_HINT = f32`` because on CPUs with AVX-512 BF16 / AMX the plugin would otherwise run
fp32 graphs in bf16 and the frames would drift from ONNX Runtime's (and the C++ host's).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from turbo_edge.runtime.backends import Backend, Binding, Shapes, numpy_dtype
from turbo_edge.spec.errors import BackendUnavailableError


class OpenVinoCpuBackend(Backend):
    name = "openvino"
    formats = ("onnx", "openvino")

    def __init__(self, threads: int = 1, inference_precision: str = "f32") -> None:
        """``inference_precision``: the plugin's ``INFERENCE_PRECISION_HINT`` (``bf16`` runs an fp32 graph in bf16)."""
        super().__init__(threads)
        self.inference_precision = inference_precision

    def load(self, path: Path) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailableError("the openvino backend needs the openvino package: pip install openvino") from e
        self._ov = ov
        self._core = ov.Core()
        self.session = self._read(path)
        self._config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.inference_precision,
        }
        self._compiled: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def _read(self, path: Path):
        if Path(path).suffix == ".xml":  # OpenVINO IR: the graph, and its weights beside it (both hashed members of the bundle)
            return self._core.read_model(str(path), str(Path(path).with_suffix(".bin")))
        # The ONNX frontend only (as the C++ backend): Core.read_model tries every frontend in turn, and on a damaged
        # file TensorFlow's prints its parse errors to stderr before the read fails.
        onnx = self._ov.frontend.FrontEndManager().load_by_framework("onnx")
        return onnx.convert(onnx.load(str(path)))

    def input_dtypes(self) -> dict[str, np.dtype]:
        return {n: numpy_dtype(p.get_element_type().get_type_name()) for p in self.session.inputs for n in p.get_names()}

    def _compile(self, input_shapes: Shapes):
        key = tuple(sorted(input_shapes.items()))
        with self._lock:
            if key not in self._compiled:
                model = self.session.clone()
                model.reshape({name: list(shape) for name, shape in input_shapes.items()})
                self._compiled[key] = self._core.compile_model(model, "CPU", self._config)
            return self._compiled[key]

    def allocate(self, input_shapes: Shapes, output_shapes: Shapes) -> Binding:
        compiled = self._compile(input_shapes)
        request = compiled.create_infer_request()
        dtypes = self.input_dtypes()
        inputs = {name: np.zeros(shape, dtype=dtypes[name]) for name, shape in input_shapes.items()}
        # An ONNX tensor can carry several names in OpenVINO (node and tensor names): match any of them.
        out_types = {n: numpy_dtype(p.get_element_type().get_type_name()) for p in compiled.outputs for n in p.get_names()}
        outputs = {name: np.zeros(shape, dtype=out_types[name]) for name, shape in output_shapes.items()}
        for name, arr in {**inputs, **outputs}.items():
            request.set_tensor(name, self._ov.Tensor(arr, shared_memory=True))
        return Binding(inputs, outputs, handle=request)

    def infer(self, binding: Binding) -> None:
        binding.handle.infer()

    def close(self) -> None:
        self._compiled = {}
        super().close()
