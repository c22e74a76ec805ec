"""Export benchmark: UNet latency side by side (PyTorch eager, ORT fp32/fp16/int8, OpenVINO fp32/bf16/int8) in one
run at one thread count, plus the bundle's parity numbers; writes benchmarks/results/export.json.

Standalone script (the library never imports it). Example:
    OMP_NUM_THREADS=1 python benchmarks/bench_export.py --model builtin --threads 1 --runs 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _timing import timed  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def unet_feeds(manifest: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """The UNet's opt-profile inputs (one prompt with its unconditional twin), at a mid-trajectory timestep."""
    rng = np.random.default_rng(seed)
    entry = manifest["components"]["unet"]
    feeds = {}
    for spec in entry["inputs"]:
        shape = entry["profile"]["opt"][spec["name"]]
        feeds[spec["name"]] = rng.standard_normal(shape).astype(np.float32)
    feeds["timestep"] = np.full(feeds["timestep"].shape, 500.0, np.float32)
    return feeds


def ort_fn(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)


def openvino_fn(path: Path, feeds: dict[str, np.ndarray], threads: int, hint: str) -> Callable[[], Any]:
    """OpenVINO with the graph reshaped to the run's static shapes (faster, and avoids the dynamic-shape
    wrong-result case documented in turbo_edge.export.parity.openvino_runner)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({name: list(arr.shape) for name, arr in feeds.items()})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda: request.infer(feeds)


def torch_fn(model_dir: str, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    import torch

    from turbo_edge.core.pipeline_io import load_teacher

    torch.set_num_threads(threads)
    unet = load_teacher(model_dir).unet
    args = {k: torch.from_numpy(v) for k, v in feeds.items()}
    kw = {"timestep_cond": args["timestep_cond"]} if "timestep_cond" in args else {}

    def run() -> Any:
        with torch.inference_mode():
            return unet(args["sample"], args["timestep"], encoder_hidden_states=args["encoder_hidden_states"], **kw).sample

    return run


def main() -> int:
    from turbo_edge.core.pipeline_io import ALIASES
    from turbo_edge.export import export_bundle, verify_bundle
    from turbo_edge.spec.configs import ExportConfig

    default_model = "builtin" if (ALIASES["builtin"] / "model_index.json").is_file() else None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=default_model, required=default_model is None, help="alias or diffusers dir (default: builtin)")
    p.add_argument("--bundle", default=None, help="bundle dir (default: build/bench_bundles/<model name>); reused if up to date")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--calibration-prompts", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export.json"))
    args = p.parse_args()

    bundle = Path(args.bundle or ROOT / "build" / "bench_bundles" / Path(str(args.model)).name)
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), threads=args.threads, int8_calibration_prompts=args.calibration_prompts)
    start = time.perf_counter()
    export_bundle(args.model, bundle, cfg)
    export_s = time.perf_counter() - start
    manifest = verify_bundle(bundle)
    feeds = unet_feeds(manifest)
    files = manifest["components"]["unet"]["files"]
    candidates: dict[str, Callable[[], Callable[[], Any]]] = {
        "pytorch_eager fp32": lambda: torch_fn(args.model, feeds, args.threads),
        "onnxruntime fp32": lambda: ort_fn(bundle / files["fp32"], feeds, args.threads),
        "onnxruntime fp16": lambda: ort_fn(bundle / files["fp16"], feeds, args.threads),
        "onnxruntime int8": lambda: ort_fn(bundle / files["int8"], feeds, args.threads),
        "openvino fp32": lambda: openvino_fn(bundle / files["fp32"], feeds, args.threads, "f32"),
        "openvino bf16": lambda: openvino_fn(bundle / files["fp32"], feeds, args.threads, "bf16"),
        "openvino int8": lambda: openvino_fn(bundle / files["int8"], feeds, args.threads, "f32"),
    }
    rows = []
    for label, make in candidates.items():
        backend, precision = label.split()
        try:
            stats = timed(make(), args.warmup, args.runs)
            rows.append({"backend": backend, "precision": precision, **stats})
        except Exception as exc:  # one backend failing is a result to record, not a reason to lose the others
            rows.append({"backend": backend, "precision": precision, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(rows[-1]), flush=True)
    ms = {f"{r['backend']} {r['precision']}": r.get("median_ms") for r in rows}
    best_fp32 = min(v for k, v in ms.items() if k.endswith("fp32") and not k.startswith("pytorch") and v)
    best_int8 = min(v for k, v in ms.items() if k.endswith("int8") and v)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "env": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", ""),
        "model": str(args.model), "bundle": str(bundle), "export_seconds": round(export_s, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
        "unet_input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "unet_latency": rows,
        "speedups": {
            "pytorch_eager / onnxruntime_fp32": ms["pytorch_eager fp32"] / ms["onnxruntime fp32"] if ms["onnxruntime fp32"] else None,
            "openvino_fp32 / openvino_int8": (ms["openvino fp32"] / ms["openvino int8"]) if ms["openvino fp32"] and ms["openvino int8"] else None,
            "best_fp32 / best_int8 (CPU)": best_fp32 / best_int8,
        },
        "parity": manifest["parity"],
        "parity_openvino": json.loads((bundle / "parity.json").read_text()).get("openvino", {}),
        "quality": "evaluator quality per precision through the runtime: benchmarks/results/int8_scope_*.json (fp32 / int8 bundles of the shipped students) and `turbo-edge eval --model BUNDLE --backend B --precision P`",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["speedups"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
