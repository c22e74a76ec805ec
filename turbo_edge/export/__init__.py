"""Export stage: a model directory -> a bundle of verified ONNX graphs (fp32 / fp16 / int8) + manifest.

Heavy libraries (torch, onnx, onnxruntime, nncf, openvino, tensorrt) are imported inside the functions
that need them, so importing this package is cheap.
"""

from turbo_edge.export.bundle import export_bundle
from turbo_edge.export.contracts import COMPONENTS, Contract, ContractError, TensorSpec
from turbo_edge.export.parity import ParityError
from turbo_edge.export.tensorrt_build import TensorRTUnavailable, build_engines
from turbo_edge.spec.bundle import verify_bundle
from turbo_edge.spec.configs import EngineConfig, ExportConfig
from turbo_edge.spec.errors import BundleError

__all__ = [
    "COMPONENTS", "BundleError", "Contract", "ContractError", "EngineConfig", "ExportConfig", "ParityError",
    "TensorRTUnavailable", "TensorSpec", "build_engines", "export_bundle", "verify_bundle",
]
