"""Quiet by default: turbo-edge prints its stages, progress bars and results; third-party INFO logs and model
loading bars appear only with ``--verbose``. Warnings (``WARNING`` and up, ``warnings.warn``) always show.

``configure`` runs first thing in the CLI, before any heavy library is imported, so the environment switches the
libraries read at import time take effect. ``quiet_nncf`` is called where NNCF is imported (it sets its own
logger to INFO then).
"""

from __future__ import annotations

import logging
import os

_state = {"verbose": False}
# Libraries whose INFO output is noise for a user of turbo-edge (their warnings still show).
THIRD_PARTY = ("nncf", "openvino", "transformers", "diffusers", "accelerate", "torch", "onnxruntime", "polygraphy", "PIL", "matplotlib")
ENV_QUIET = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def verbose() -> bool:
    return _state["verbose"]


def configure(verbose: bool = False) -> None:
    """Log turbo-edge's own INFO lines tersely; everything else at WARNING unless ``verbose``."""
    _state["verbose"] = verbose
    if not verbose:
        for key, value in ENV_QUIET.items():
            os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    own = logging.getLogger("turbo_edge")
    own.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose and not own.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        own.addHandler(handler)
        own.propagate = False
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def quiet_nncf() -> None:
    """NNCF sets its logger to INFO (hundreds of lines per quantization) when imported; undo that unless verbose."""
    if not verbose():
        import nncf

        nncf.set_log_level(logging.WARNING)
