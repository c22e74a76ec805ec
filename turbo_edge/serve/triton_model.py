"""The Triton Python-backend model of a turbo-edge bundle (``turbo-edge serve`` copies this file to NAME/1/model.py).

Each model instance is its own backend-stub process: ``initialize`` opens the bundle named in config.pbtxt's
parameters with the torch-free runtime once, ``execute`` runs every request of a batch through it, ``finalize``
closes it. A request the runtime refuses (empty prompt, unsupported steps, a seed out of range, words outside a
closed vocabulary, a clip length the bundle does not serve) gets an error response with the runtime's one-line message and Triton's INVALID_ARG code (HTTP
400: the client's to fix); anything else is an internal error (500). The other requests of the batch, and the
server, carry on. A request its client cancelled (gRPC; Triton's HTTP endpoint does not report a client that went
away) stops before its next denoiser call, and the server's log records where.

Needs ``turbo_edge`` (and numpy, onnxruntime / openvino) importable by the stub's interpreter. The stub runs Python
isolated, ignoring ``PYTHONPATH``, so the entries of ``PYTHONPATH`` are put on ``sys.path`` here, before any
import that needs them: ``turbo-edge serve`` sets it to its own environment's site-packages. In NVIDIA's Triton
containers ``pip install turbo-edge`` into the container's Python is enough.
"""

import json
import os
import sys

for _entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)

import triton_python_backend_utils as pb_utils  # noqa: E402  (needs numpy: after the path fix)

from turbo_edge.runtime.pipeline import Pipeline  # noqa: E402
from turbo_edge.serve.handler import Cancelled, run_request  # noqa: E402
from turbo_edge.serve.repository import INPUTS, OUTPUT, RANGE_INPUTS  # noqa: E402


def _error_text(exc: Exception) -> str:
    """The runtime's own message for a refused input; anything else is named by its type (a bug, not the request)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ValueError) else f"internal error ({type(exc).__name__}): {text}"


def _error(exc: Exception):
    """A refused input (``ValueError``, the runtime's ``RuntimeInputError`` included) is INVALID_ARG, HTTP 400; a
    cancelled request CANCELLED; anything else Triton's default, 500. Stubs without error codes get the text alone."""
    codes = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    if codes is None:
        return pb_utils.TritonError(_error_text(exc))
    if isinstance(exc, Cancelled):
        return pb_utils.TritonError(_error_text(exc), getattr(pb_utils.TritonError, "CANCELLED", pb_utils.TritonError.UNAVAILABLE))
    if isinstance(exc, ValueError):
        return pb_utils.TritonError(_error_text(exc), pb_utils.TritonError.INVALID_ARG)
    return pb_utils.TritonError(_error_text(exc))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.pipe = Pipeline.from_bundle(params["bundle"], backend=params["backend"], precision=params["precision"],
                                         threads=int(params["threads"]), verify=params.get("verify", "true") == "true",
                                         decoder=params.get("decoder") or None)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            tensors = {}
            for spec in INPUTS + RANGE_INPUTS:  # an input the model's config lacks is never sent (Triton refuses it)
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                tensors[spec.name] = None if tensor is None else tensor.as_numpy()
            try:
                frames = run_request(self.pipe, tensors, cancelled=getattr(request, "is_cancelled", None))
            except Exception as exc:  # noqa: BLE001  one bad request must not take the others (or the server) down
                if isinstance(exc, Cancelled) and hasattr(pb_utils, "Logger"):  # the client is gone: the server's log is the only record
                    pb_utils.Logger.log_info(f"turbo-edge: {exc}")
                responses.append(pb_utils.InferenceResponse(error=_error(exc)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT.name, frames)]))
        return responses

    def finalize(self) -> None:
        self.pipe.close()
