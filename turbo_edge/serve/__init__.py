"""``turbo-edge serve``: a bundle behind Triton Inference Server, through the torch-free runtime.

    turbo-edge serve --bundle bundles/student --instances 2            # writes build/serve/turbo_edge, serves it
    turbo-edge serve --bundle bundles/student --backend tensorrt --write-only --repository repo   # for a GPU host

``repository`` writes the model repository (config.pbtxt from the manifest, the Python-backend model file),
``server`` runs the nvidia-pytriton wheel's ``tritonserver`` on it, ``handler`` turns one request into frames.
Imports only ``turbo_edge.spec`` and ``turbo_edge.runtime`` (no torch); tritonserver is needed to serve only.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from turbo_edge.serve.repository import INPUTS, OUTPUT, config_pbtxt, write_repository
from turbo_edge.serve.server import ServeError, TritonInstall, TritonServer, free_port
from turbo_edge.spec.configs import ServeConfig


def run_serve(cfg: ServeConfig, verbose: bool = False, say: Callable[[str], None] = print) -> None:
    """Write the repository; unless ``cfg.write_only``, serve it in the foreground until Ctrl-C or SIGTERM."""
    if not cfg.write_only:
        TritonInstall.find()  # before writing anything: say how to install the server first
    model_dir = write_repository(cfg)
    if cfg.write_only:
        say(f"wrote {model_dir} (config.pbtxt, 1/model.py); serve it with "
            f"`tritonserver --model-repository {model_dir.parent.resolve()}` where turbo-edge is installed")
        return
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C / SIGINT stops the server even where the caller's shell started it with SIGINT ignored (a background job
    # of a non-interactive shell: `turbo-edge serve ... &`), where Python installs no KeyboardInterrupt handler.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    server = TritonServer(cfg.repository, port=cfg.port, address=cfg.address, verbose=verbose, ready_timeout=cfg.ready_timeout)
    try:
        server.start()
        say(f"serving {cfg.model_name} ({cfg.bundle}, {cfg.backend} {cfg.precision}{f', decoder {cfg.decoder}' if cfg.decoder else ''}, "
            f"{cfg.instances} instance(s)) at "
            f"{server.url}/v2/models/{cfg.model_name}/infer (gRPC {server.grpc_url}); Ctrl-C stops"
            + ("" if verbose else f"; log: {server.log_file}"))
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                raise ServeError(f"tritonserver stopped unexpectedly (code {server.process.returncode}); see {server.log_file}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if server.process is not None and server.process.poll() is None:
            say("stopping ...")
            server.stop()
            say("stopped")

__all__ = ["INPUTS", "OUTPUT", "ServeError", "TritonInstall", "TritonServer", "config_pbtxt", "free_port", "run_serve", "write_repository"]
