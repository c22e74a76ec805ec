"""Device-side timing and memory on NVIDIA GPUs for the GPU backends (ort-cuda, tensorrt), over cuda-python: no torch.

The bench times a GPU backend's ``infer`` with a pair of CUDA events recorded on the stream the work runs on (the
TensorRT binding's own stream; the legacy default stream for ONNX Runtime, which synchronises with its blocking
streams), as benchmarks/gpu_check.py does with torch's events; the host clock is recorded beside it. Written against
the CUDA runtime API; never run in this project (no GPU here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from turbo_edge.spec.errors import BackendUnavailableError


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as e:
            raise BackendUnavailableError("CUDA-event timing needs cuda-python: pip install 'turbo-edge[gpu]'") from e
    return cudart


class CudaEvents:
    """Elapsed device time of a call between two CUDA events, device memory in use, and the device's name."""

    def __init__(self, runtime: Any = None) -> None:
        self.rt = runtime or _cudart()

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def time_ms(self, fn: Callable[[], Any], stream: Any = 0) -> float:
        """Milliseconds between events recorded on ``stream`` before and after ``fn()`` (which may synchronise itself)."""
        start, end = self._ok(self.rt.cudaEventCreate()), self._ok(self.rt.cudaEventCreate())
        try:
            self._ok(self.rt.cudaEventRecord(start, stream))
            fn()
            self._ok(self.rt.cudaEventRecord(end, stream))
            self._ok(self.rt.cudaEventSynchronize(end))
            return float(self._ok(self.rt.cudaEventElapsedTime(start, end)))
        finally:
            self._ok(self.rt.cudaEventDestroy(start))
            self._ok(self.rt.cudaEventDestroy(end))

    def memory_used_bytes(self) -> int:
        """Bytes in use on the current device (total - free, every process's)."""
        free, total = self._ok(self.rt.cudaMemGetInfo())
        return int(total) - int(free)

    def device_name(self) -> str:
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = props.name
        return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def binding_stream(binding: Any) -> Any:
    """The CUDA stream a backend binding runs on: the TensorRT binding's own, else the default stream (0)."""
    return getattr(binding.handle, "stream", 0) if binding is not None else 0


__all__ = ["CudaEvents", "binding_stream"]
