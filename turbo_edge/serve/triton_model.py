"""The Triton Python-backend model of a turbo-edge bundle (``turbo-edge serve`` copies this file to NAME/1/model.py).

Each model instance is its own backend-stub process: ``initialize`` opens the bundle named in config.pbtxt's
parameters with the torch-free runtime once, ``execute`` runs every request of a batch through it, ``finalize``
closes it. A request the runtime refuses (empty prompt, unsupported steps, a seed out of range, words outside a
closed vocabulary) gets an error response with the runtime's one-line message; the other requests of the batch,
and the server, carry on.

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
from turbo_edge.serve.handler import run_request  # noqa: E402
from turbo_edge.serve.repository import INPUTS, OUTPUT  # noqa: E402


def _error_text(exc: Exception) -> str:
    """The runtime's own message for a refused input; anything else is named by its type (a bug, not the request)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ValueError) else f"internal error ({type(exc).__name__}): {text}"


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.pipe = Pipeline.from_bundle(params["bundle"], backend=params["backend"], precision=params["precision"],
                                         threads=int(params["threads"]), verify=params.get("verify", "true") == "true")

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            tensors = {}
            for spec in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                tensors[spec.name] = None if tensor is None else tensor.as_numpy()
            try:
                frames = run_request(self.pipe, tensors)
            except Exception as exc:  # noqa: BLE001  one bad request must not take the others (or the server) down
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(_error_text(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT.name, frames)]))
        return responses

    def finalize(self) -> None:
        self.pipe.close()
