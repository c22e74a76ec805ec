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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_Terse() if not verbose else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("turbo_edge").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    # The environment switches act at import; a library imported before ``configure`` (a test session, a notebook, an
    # embedding app) is switched through its own API instead, so its model-loading bars stay quiet too.
    import sys

    for lib in ("transformers", "diffusers"):
        if lib in sys.modules:
            utils_logging = getattr(getattr(sys.modules[lib], "utils", None), "logging", None)
            toggle = getattr(utils_logging, "enable_progress_bar" if verbose else "disable_progress_bar", None)
            if toggle is not None:
                toggle()


class _Terse(logging.Formatter):
    """turbo-edge's own INFO lines as plain text (they are its stage messages); anything else with level and name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith("turbo_edge") and record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def quiet_nncf() -> None:
    """NNCF sets its logger to INFO (hundreds of lines per quantization) when imported; undo that unless verbose."""
    if not verbose():
        import nncf

        nncf.set_log_level(logging.WARNING)
