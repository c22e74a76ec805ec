"""The runtime backend registry as data: name -> ``"module:Class"``, so configs validate backend names without
importing the runtime, and the runtime imports a backend's library only when it is used."""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "ort-cpu": "turbo_edge.runtime.backends.ort:OrtCpuBackend",
    "ort-cuda": "turbo_edge.runtime.backends.ort:OrtCudaBackend",
    "openvino": "turbo_edge.runtime.backends.openvino_cpu:OpenVinoCpuBackend",
    "tensorrt": "turbo_edge.runtime.backends.tensorrt:TensorRTBackend",
}
GPU_BACKENDS = ("ort-cuda", "tensorrt")


def register_backend(name: str, target: str) -> None:
    """Add a backend: ``target`` is ``"package.module:ClassName"`` of a ``runtime.backends.Backend`` subclass."""
    if ":" not in target:
        raise ValueError(f"backend target must be 'module:ClassName', got {target!r}")
    BACKENDS[name] = target
