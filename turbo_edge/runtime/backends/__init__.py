"""Runtime backends: one small interface (load / allocate / infer / close) and a registry keyed by name.

The registry stores ``module:class`` strings, so ``import turbo_edge.runtime...`` never imports onnxruntime,
openvino or tensorrt; each backend imports its library inside ``load`` and raises ``BackendUnavailableError``
naming what to install when it is absent.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.spec.backends import BACKENDS, register_backend
from turbo_edge.spec.bundle import Bundle
from turbo_edge.spec.errors import BackendUnavailableError

__all__ = ["BACKENDS", "Backend", "Binding", "Shapes", "backend_class", "create_backend", "numpy_dtype", "register_backend"]

Shapes = dict[str, tuple[int, ...]]


@dataclass
class Binding:
    """Preallocated host buffers of one session at fixed shapes: write ``inputs`` in place, ``infer``, read ``outputs``.

    Not shareable between threads (it owns the backend's per-request state); make one per thread.
    """

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    handle: Any = field(default=None, repr=False)  # the backend's own object (IOBinding, InferRequest, ...)


class Backend(ABC):
    """One loaded model on one device. ``load`` once, ``allocate`` per shape set (and thread), ``infer`` many times."""

    name: str = ""
    formats: tuple[str, ...] = ("onnx",)  # the bundle file formats (spec.bundle.FORMATS) this backend reads

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads

    @abstractmethod
    def load(self, path: Path) -> None: ...

    @abstractmethod
    def input_dtypes(self) -> dict[str, np.dtype]: ...

    @abstractmethod
    def allocate(self, input_shapes: Shapes, output_shapes: Shapes) -> Binding: ...

    @abstractmethod
    def infer(self, binding: Binding) -> None: ...

    def model_file(self, bundle: Bundle, component: str, precision: str) -> Path:
        """The file this backend loads for ``component`` at ``precision`` (the ONNX graph; TensorRT: its engine);
        a variant in a format the backend cannot read is refused here, before anything loads."""
        bundle.require_format(component, precision, self.formats, self.name)
        return bundle.model_path(component, precision)

    def close(self) -> None:
        """Release the session; the default drops references and lets the library free them."""
        self.__dict__.pop("session", None)


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def create_backend(name: str, threads: int = 1, **options: Any) -> Backend:
    return backend_class(name)(threads=threads, **options)


def numpy_dtype(type_name: str) -> np.dtype:
    """ONNX / ORT / OpenVINO element type names -> numpy dtype."""
    table = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32}
    if type_name not in table:
        raise ValueError(f"element type {type_name!r} is not one the runtime binds ({sorted(table)})")
    return np.dtype(table[type_name])
