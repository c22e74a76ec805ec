"""What int8 should quantize on this CPU: every op NNCF's preset picks, or convolutions only.

For each shipped model, exports one bundle per ``--int8-scope`` (fp32 + NNCF int8 Q/DQ calibrated on the model's
own few-step sampler, the project's exporter), then, in one run:
  * times the UNet at batch 1 (as the runtime calls it for one prompt) in OpenVINO and ONNX Runtime, fp32 and each
    int8 graph interleaved call by call, so machine load drifts hit every graph alike;
  * breaks each OpenVINO graph's time down by executed kernel (PERF_COUNT), which says *why* int8 is or is not
    faster here (which ops ran in int8, which fp32 fusions the Q/DQ nodes broke);
  * scores every bundle and precision with the held-out evaluator through the runtime (``turbo-edge eval``'s code).

Standalone script (the library never imports it). Example:
    python benchmarks/bench_int8_scope.py --models builtin-student,builtin-pruned --threads 2 --num 48
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _timing import time_interleaved  # benchmarks/ is on sys.path when a script runs
from bench_int8_scale import feeds_for, openvino_request

ROOT = Path(__file__).resolve().parent.parent


def bundle_for(model: str, scope: str, work: Path, threads: int, calibration_prompts: int, model_type: str) -> Path:
    """The model's fp32 + int8 bundle at this scope, exported once into ``work`` (reused when it verifies)."""
    from turbo_edge.core.pipeline_io import resolve_model_path
    from turbo_edge.export import export_bundle, verify_bundle
    from turbo_edge.spec.configs import ExportConfig

    out = work / (f"{model}_{scope}" if model_type == "transformer" else f"{model}_{scope}_{model_type}")
    if (out / "manifest.json").is_file():
        try:
            verify_bundle(out)
            return out
        except Exception as err:  # a tampered or stale bundle: export again
            print(f"[int8_scope] {out}: {err}; exporting again", flush=True)
    cfg = ExportConfig(model=model, out=str(out), precisions=("fp32", "int8"), int8_scope=scope, threads=threads,
                       openvino_check=False, int8_calibration_prompts=calibration_prompts, int8_model_type=model_type)
    start = time.perf_counter()
    export_bundle(resolve_model_path(model), out, cfg)
    print(f"[int8_scope] exported {out} in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def kernel_breakdown(path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 10, top: int = 8) -> list[dict[str, Any]]:
    """OpenVINO's per-node timings summed by (node type, kernel), in ms per call, largest first."""
    request = openvino_request(path, feeds, threads, profile=True)
    for _ in range(3):
        request.infer(feeds)
    total: dict[tuple[str, str], float] = collections.defaultdict(float)
    count: collections.Counter[tuple[str, str]] = collections.Counter()
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            key = (info.node_type, info.exec_type)
            total[key] += info.real_time.total_seconds() * 1e3 / runs
            count[key] += 1
    rows = sorted(total.items(), key=lambda kv: -kv[1])
    return [{"node_type": k[0], "kernel": k[1], "nodes": count[k] // runs, "ms": v} for k, v in rows[:top] if v > 0]


def ort_call(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Any:
    from turbo_edge.export.parity import ort_runner

    run = ort_runner(path, threads)
    return lambda: run(feeds)


def main() -> int:
    from turbo_edge.evaluate import run_eval
    from turbo_edge.spec.configs import EvalConfig
    from turbo_edge.spec.host import host_int8_dot_flags

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="builtin-student,builtin-pruned")
    p.add_argument("--scopes", default="all,conv", help="comma-separated int8 scopes (ExportConfig.int8_scope)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8-model-type", default="transformer", choices=["transformer", "default"],
                   help="NNCF preset of every int8 graph (ExportConfig.int8_model_type)")
    p.add_argument("--runs", type=int, default=40, help="timed calls per graph (interleaved)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--block", type=int, default=4,
                   help="calls of one graph in a row per turn, the first untimed (4: a 4-step sampler's UNet calls, weights "
                        "warm in cache); 1: strict A, B, C turns, every call cache-cold")
    p.add_argument("--num", type=int, default=48, help="validation prompts per evaluator score")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--calibration-prompts", type=int, default=8)
    p.add_argument("--work", default=str(ROOT / "build" / "int8_scope"))
    p.add_argument("--out", help="default: benchmarks/results/int8_scope_vnni.json on a CPU with int8 dot products "
                                 "(VNNI / AMX), else int8_scope_avx2.json: the answer differs between the two")
    args = p.parse_args()
    dot_flags = host_int8_dot_flags() or []
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / f"int8_scope_{'vnni' if dot_flags else 'avx2'}.json")
    scopes = args.scopes.split(",")
    work = Path(args.work)
    result: dict[str, Any] = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "loadavg_at_start": list(os.getloadavg()), "int8_dot_product": dot_flags},
        "int8_model_type": args.int8_model_type, "runs": args.runs, "block": args.block, "prompts": {"split": "val", "num": args.num}, "steps": args.steps,
        "models": {},
    }
    for model in args.models.split(","):
        bundles = {scope: bundle_for(model, scope, work, args.threads, args.calibration_prompts, args.int8_model_type) for scope in scopes}
        first = bundles[scopes[0]]
        feeds = feeds_for(json.loads((first / "manifest.json").read_text()), batch=1)
        graphs = {"fp32": first / "unet.onnx", **{f"int8_{s}": b / "unet.int8.onnx" for s, b in bundles.items()}}
        calls: dict[str, Any] = {}
        for name, path in graphs.items():
            request = openvino_request(path, feeds, args.threads)
            calls[f"openvino {name}"] = lambda r=request, f=feeds: r.infer(f)
            calls[f"onnxruntime {name}"] = ort_call(path, feeds, args.threads)
        times = time_interleaved(calls, args.warmup, args.runs, block=args.block)
        latency = {name: 1e3 * statistics.median(v) for name, v in times.items()}
        speedups = {f"{rt} fp32 / {name}": latency[f"{rt} fp32"] / latency[f"{rt} {name}"]
                    for rt in ("openvino", "onnxruntime") for name in graphs if name != "fp32"}
        breakdown = {name: kernel_breakdown(path, feeds, args.threads) for name, path in graphs.items()}
        quality: dict[str, Any] = {}
        for name in graphs:
            bundle, precision = (first, "fp32") if name == "fp32" else (bundles[name.removeprefix("int8_")], "int8")
            score = run_eval(EvalConfig(model=str(bundle), backend="openvino", precision=precision, steps=args.steps,
                                        num=args.num, threads=args.threads))
            quality[name] = {k: score[k] for k in ("content_acc", "motion_acc", "direction_acc", "fd", "consistency")}
        result["models"][model] = {"unet_median_ms": latency, "speedups": speedups, "openvino_kernels_ms": breakdown,
                                   "quality_openvino": quality, "bundles": {s: str(b) for s, b in bundles.items()}}
        print(f"{model}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()), flush=True)
        print("   quality: " + ", ".join(f"{k} {v['content_acc']:.3f}/{v['motion_acc']:.3f}" for k, v in quality.items()), flush=True)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every model
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
