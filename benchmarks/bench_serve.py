"""Serving benchmark: a bounded load on `turbo-edge serve` (real tritonserver, loopback) against the direct runtime.

    python benchmarks/bench_serve.py --bundle build/bundles/student --requests 200 --concurrency 8 --instances 2

First one runtime in this process runs the requests serially (the baseline, with the per-instance thread count,
and again with every core's worth of threads); then the server starts on free ports, takes a warm-up, and
``--concurrency`` client threads (one tritonclient HTTP client each: it is not thread-safe) send the same
requests, prompt i with seed i, until all are answered. Every answer is compared with the baseline's frames.
Writes JSON: p50/p90/p99 latency, throughput (req/s), throughput over the serial baseline, failed requests
(asserted zero), mismatched clips, the exact command, the CPU, the bundle. Standalone: never imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from turbo_edge.core import world
from turbo_edge.runtime import Pipeline
from turbo_edge.serve import TritonServer, free_port, write_repository
from turbo_edge.spec.configs import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
PROMPT_WARMUP = "a red circle moving left"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields.get("Model name", "unknown").strip()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def serial_baseline(bundle: str, requests: list[tuple[str, int]], steps: int | None, backend: str, precision: str,
                    threads: int) -> tuple[dict, list[np.ndarray]]:
    pipe = Pipeline.from_bundle(bundle, backend=backend, precision=precision, threads=threads)
    for prompt, seed in requests[:5]:
        pipe.generate(prompt, steps=steps, seed=seed)
    latencies, clips = [], []
    start = time.perf_counter()
    for prompt, seed in requests:
        t0 = time.perf_counter()
        clips.append(pipe.generate(prompt, steps=steps, seed=seed))
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    pipe.close()
    return {"threads": threads, "wall_seconds": wall, "throughput_rps": len(requests) / wall,
            "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}, clips


def load(url: str, model: str, requests: list[tuple[str, int]], steps: int | None, concurrency: int) -> dict:
    """Send every request with ``concurrency`` in flight; latency per request, answers by index, failures."""
    work: queue.Queue = queue.Queue()
    for i in range(len(requests)):
        work.put(i)
    latencies: list[float] = [0.0] * len(requests)
    answers: list[np.ndarray | None] = [None] * len(requests)
    failures: list[str] = []

    def worker() -> None:
        client = httpclient.InferenceServerClient(url=url, network_timeout=300.0, connection_timeout=60.0)
        try:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                prompt, seed = requests[i]
                arrays = [("prompt", np.array([[prompt.encode()]], dtype=object), "BYTES"), ("seed", np.array([[seed]], dtype=np.int64), "INT64")]
                if steps is not None:
                    arrays.append(("steps", np.array([[steps]], dtype=np.int32), "INT32"))
                inputs = []
                for name, array, datatype in arrays:
                    tensor = httpclient.InferInput(name, list(array.shape), datatype)
                    tensor.set_data_from_numpy(array)
                    inputs.append(tensor)
                t0 = time.perf_counter()
                try:
                    answers[i] = client.infer(model, inputs).as_numpy("frames")[0]
                except (InferenceServerException, OSError) as exc:
                    failures.append(f"request {i}: {exc}")
                latencies[i] = time.perf_counter() - t0
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - start, "latencies": latencies, "answers": answers, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="build/bundles/student")
    parser.add_argument("--bundle-made-by", default="turbo-edge export --model builtin-student --out build/bundles/student --precision fp32 "
                                                    "--set openvino_check=false --threads 2",
                        help="the command that made --bundle, recorded in the JSON")
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads per instance (and of the serial baseline)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--batch-delay-us", type=int, default=0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=16, help="requests sent to the server before the timed load")
    parser.add_argument("--steps", type=int, default=None, help="default: the bundle's default_steps")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()

    load_avg = os.getloadavg()
    prompts = [a.prompt for a in world.prompt_set("val", args.requests)]
    requests = [(p, i) for i, p in enumerate(prompts)]
    serial, want = serial_baseline(args.bundle, requests, args.steps, args.backend, args.precision, args.threads)
    all_cores = args.threads * args.instances
    serial_all, _ = serial_baseline(args.bundle, requests, args.steps, args.backend, args.precision, all_cores) if all_cores != args.threads else (serial, None)

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        cfg = ServeConfig(bundle=args.bundle, backend=args.backend, precision=args.precision, threads=args.threads, instances=args.instances,
                          max_batch=args.max_batch, batch_delay_us=args.batch_delay_us, port=free_port(), repository=str(Path(tmp) / "repo"))
        write_repository(cfg)
        start = time.perf_counter()
        with TritonServer(cfg.repository, port=cfg.port) as server:
            ready_seconds = time.perf_counter() - start
            url = server.url.removeprefix("http://")
            load(url, cfg.model_name, [(PROMPT_WARMUP, 1000 + i) for i in range(args.warmup)], args.steps, args.concurrency)
            result = load(url, cfg.model_name, requests, args.steps, args.concurrency)
            with httpclient.InferenceServerClient(url=url) as client:
                server_version = client.get_server_metadata()["version"]
                stats = client.get_inference_statistics(cfg.model_name)["model_stats"][0]

    answered = [(a, w) for a, w in zip(result["answers"], want) if a is not None]
    diffs = [int(np.abs(a.astype(int) - w.astype(int)).max()) for a, w in answered]
    latencies = [t for t, a in zip(result["latencies"], result["answers"]) if a is not None]
    throughput = len(answered) / result["wall"]
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "cpu": cpu_model(), "cores": os.cpu_count(), "machine": {"platform": platform.platform(), "loadavg_at_start": list(load_avg)},
        "bundle": {"path": args.bundle, "made_by": args.bundle_made_by, **_bundle_summary(args.bundle)},
        "server": {"tritonserver": server_version, "instances": cfg.instances, "threads_per_instance": cfg.threads, "backend": cfg.backend,
                   "precision": cfg.precision, "max_batch": cfg.max_batch, "batch_delay_us": cfg.batch_delay_us,
                   "seconds_to_ready": ready_seconds, "model_executions": int(stats["execution_count"]),
                   "model_inferences": int(stats["inference_count"])},
        "load": {"requests": args.requests, "concurrency": args.concurrency, "warmup_requests": args.warmup, "steps": args.steps or "bundle default",
                 "client": "tritonclient.http, one client per thread, prompt i with seed i"},
        "failed_requests": len(result["failures"]), "failures": result["failures"][:5],
        "clips_differing_from_direct": sum(d > 0 for d in diffs), "max_abs_diff_vs_direct": max(diffs, default=None),
        "latency_ms": {"p50": percentile(latencies, 50) * 1e3, "p90": percentile(latencies, 90) * 1e3, "p99": percentile(latencies, 99) * 1e3,
                       "mean": float(np.mean(latencies)) * 1e3},
        "throughput_rps": throughput, "wall_seconds": result["wall"],
        "direct_serial": serial, "direct_serial_all_cores": serial_all,
        "throughput_over_direct_serial": throughput / serial["throughput_rps"],
        "throughput_over_direct_serial_all_cores": throughput / serial_all["throughput_rps"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("failed_requests", "latency_ms", "throughput_rps", "throughput_over_direct_serial",
                                             "throughput_over_direct_serial_all_cores", "clips_differing_from_direct")}, indent=1))
    print(f"wrote {args.out}")
    assert report["failed_requests"] == 0, report["failures"]
    return 0



def _bundle_summary(bundle: str) -> dict:
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    return {"source": manifest.get("source"), "video": manifest["video"], "default_steps": manifest["sampler"]["default_steps"],
            "sampler": manifest["sampler"]["kind"]}


if __name__ == "__main__":
    sys.exit(main())
