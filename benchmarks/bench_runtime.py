"""Runtime benchmark: overhead ratio, C++ vs Python latency, peak RSS (runtime vs PyTorch), memory over 1,000 calls.

    OMP_NUM_THREADS=1 python benchmarks/bench_runtime.py --bundle B --model M [--steps 4] [--backend openvino]

``--model`` is the diffusers directory the bundle was exported from (for the PyTorch pipeline's RSS). Each
measurement runs in its own subprocess so peak RSS is that pipeline's alone. Warm-up, then medians.
Writes benchmarks/results/runtime.json (rows plus the exact command). Standalone: never imported by the library.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving left"


def python_runtime(bundle: str, backend: str, steps: int, threads: int, repeats: int) -> dict:
    from turbo_edge.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle, backend=backend, threads=threads)
    for _ in range(3):
        pipe.run([PROMPT], steps=steps)
    e2e, session = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        res = pipe.run([PROMPT], steps=steps)
        e2e.append(time.perf_counter() - start)
        session.append(sum(res.session_seconds.values()))
    return {"median_seconds": statistics.median(e2e), "median_session_seconds": statistics.median(session),
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def memory_growth(bundle: str, backend: str, threads: int, calls: int) -> dict:
    from turbo_edge.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(bundle, backend=backend, threads=threads)
    steps = min(pipe.bundle.sampler.supported_steps)

    def rss_kb() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4

    for _ in range(50):
        pipe.generate(PROMPT, steps=steps)
    before = rss_kb()
    start = time.perf_counter()
    for _ in range(calls):
        pipe.generate(PROMPT, steps=steps)
    return {"calls": calls, "steps": steps, "rss_before_kb": before, "rss_after_kb": rss_kb(), "growth_kb": rss_kb() - before,
            "seconds": time.perf_counter() - start}


def torch_pipeline(model: str, steps: int, threads: int, guidance: float) -> dict:
    import torch

    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import generate_teacher

    torch.set_num_threads(threads)
    m = load_teacher(model)
    generate_teacher(m, [PROMPT], steps=steps, guidance=guidance)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        generate_teacher(m, [PROMPT], steps=steps, guidance=guidance)
        times.append(time.perf_counter() - start)
    return {"median_seconds": statistics.median(times), "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _child(fn: str, **kw) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_runtime as b; print(json.dumps(b.{fn}(**{kw!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--model", help="diffusers dir the bundle came from (PyTorch pipeline RSS); omitted: skipped")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtime.json"))
    a = ap.parse_args()
    manifest = json.loads((Path(a.bundle) / "manifest.json").read_text())
    steps = a.steps or manifest["sampler"]["default_steps"]
    rows = []
    py = _child("python_runtime", bundle=a.bundle, backend=a.backend, steps=steps, threads=a.threads, repeats=a.repeats)
    rows.append({"name": f"python runtime ({a.backend})", **py, "overhead_ratio": py["median_seconds"] / py["median_session_seconds"]})
    host = ROOT / "build" / "runtime_cpp" / "turbo_edge_generate"
    if not host.exists():
        subprocess.run([str(ROOT / "runtime" / "cpp" / "build.sh")], check=True)
    cpp_out = subprocess.run([str(host), "--bundle", a.bundle, "--prompt", PROMPT, "--steps", str(steps), "--threads", str(a.threads),
                              "--repeat", str(a.repeats), "--out", "/tmp/bench_runtime_frames"], capture_output=True, text=True, check=True).stdout
    cpp = json.loads(cpp_out.strip().splitlines()[-1])
    rows.append({"name": "c++ runtime (openvino)", "median_seconds": cpp["median_seconds"], "median_session_seconds": cpp["median_session_seconds"],
                 "peak_rss_kb": cpp["peak_rss_kb"], "overhead_ratio": cpp["median_seconds"] / cpp["median_session_seconds"]})
    summary = {"cpp_over_python_latency": cpp["median_seconds"] / py["median_seconds"],
               "python_overhead_ratio": rows[0]["overhead_ratio"], "cpp_overhead_ratio": rows[1]["overhead_ratio"]}
    if a.model:
        guidance = float(manifest["sampler"]["guidance"])
        pt = _child("torch_pipeline", model=a.model, steps=steps, threads=a.threads, guidance=guidance)
        rows.append({"name": "pytorch pipeline (core.sampling)", **pt})
        summary["python_runtime_rss_over_pytorch_rss"] = py["peak_rss_kb"] / pt["peak_rss_kb"]
        summary["cpp_runtime_rss_over_pytorch_rss"] = cpp["peak_rss_kb"] / pt["peak_rss_kb"]
    mem = _child("memory_growth", bundle=a.bundle, backend=a.backend, threads=a.threads, calls=a.calls)
    rows.append({"name": f"{a.calls} consecutive calls ({a.backend})", **mem})
    omp = os.environ.get("OMP_NUM_THREADS")
    result = {"command": (f"OMP_NUM_THREADS={omp} " if omp else "") + "python " + " ".join(sys.argv), "steps": steps, "threads": a.threads,
              "bundle_source": manifest.get("source"), "summary": summary, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
