"""GPU check: every GPU path that imports on this machine, timed, in one run under a time budget.

    bash benchmarks/gpu_check.sh              # writes benchmarks/results/gpu_<gpu-slug>.json
    python benchmarks/gpu_check.py --dry-run  # probes only: what would run, what is skipped and why

Paths, each in its own ``try`` (one failing or missing path is a recorded reason, never a failed run):
- ``pytorch-cuda-builtin``: the builtin teacher (batch 2, one CFG call) and student (batch 1) UNets in fp32 / fp16 /
  bf16, eager and replayed from a CUDA graph; CUDA-event latency, max abs diff vs fp32 eager, peak device memory.
- ``pytorch-cuda-modelscope``: a ModelScope-T2V-shaped UNet3D with random weights (built from its config, nothing
  downloaded), 16 frames at 256x256 (latent 32x32), fp16 / bf16, eager and CUDA graph.
- ``ort-cuda``: the student bundle's UNet graphs on ONNX Runtime's CUDAExecutionProvider (``runtime.backends.ort``).
- ``tensorrt``: engines built by ``turbo-edge engine``'s code (``export.tensorrt_build``), run by the ``tensorrt``
  backend with and without CUDA-graph replay; parity against ONNX Runtime CPU fp32.
Teacher ÷ student ratios are composed from UNet call medians: 50 CFG calls at batch 2 ÷ 4 calls at batch 1.
The pure parts (path selection, budget, ratios, the record) are unit-tested on CPU (tests/benchmarks/test_gpu_check.py);
the GPU parts are written against torch.cuda, onnxruntime and TensorRT 10's APIs and unverified until a GPU runs them.
Standalone: the library never imports this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "benchmarks") not in sys.path:  # _timing beside this file, also when a test loads it by path
    sys.path.insert(0, str(ROOT / "benchmarks"))
PATHS = ("pytorch-cuda-builtin", "pytorch-cuda-modelscope", "ort-cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
MODES = ("eager", "cuda_graph")
SCHEMA_VERSION = 1
# ModelScope T2V's UNet (damo-vilab/text-to-video-ms-1.7b unet/config.json), random weights.
MODELSCOPE_UNET: dict[str, Any] = {
    "sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 1024,
    "attention_head_dim": 64, "block_out_channels": (320, 640, 1280, 1280), "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
}
MODELSCOPE_FRAMES, MODELSCOPE_TEXT_LEN = 16, 77


# --- pure logic (unit-tested on CPU) ---------------------------------------------------------------------------------

def select_paths(probe: dict[str, Any]) -> dict[str, str | None]:
    """Each path -> None (runs) or the reason it is skipped, from ``probe``'s import results."""
    cuda = None if probe.get("cuda") else f"no CUDA device for PyTorch: {probe.get('cuda_reason') or 'torch.cuda.is_available() is False'}"
    builtin = None if probe.get("builtin_models") else "the builtin teacher / student are not built in this checkout"
    providers = probe.get("ort_providers") or []
    ort = None if "CUDAExecutionProvider" in providers else (
        f"onnxruntime reports no CUDAExecutionProvider (providers {providers}; {probe.get('ort_reason') or 'CPU build'})")
    trt = None if probe.get("tensorrt_version") else f"tensorrt does not import ({probe.get('tensorrt_reason') or 'not installed'})"
    cuda_python = None if probe.get("cuda_python") else "cuda-python does not import (the tensorrt backend's CUDA calls need it)"
    diffusers = None if probe.get("diffusers") else "diffusers does not import"
    return {
        "pytorch-cuda-builtin": cuda or builtin,
        "pytorch-cuda-modelscope": cuda or diffusers,
        "ort-cuda": ort or builtin,  # its bundle is exported from the builtin student
        "tensorrt": trt or cuda or cuda_python or builtin,
    }


class Budget:
    """Wall-clock budget: no new case starts once ``seconds`` are spent, or when it needs more than is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock, self.start = float(seconds), clock, clock()
        self.stopped = False

    def spent(self) -> float:
        return self.clock() - self.start

    def allows(self, need_s: float = 0.0) -> bool:
        ok = self.spent() + need_s <= self.seconds
        self.stopped |= not ok
        return ok

    def reason(self, need_s: float = 0.0) -> str:
        return f"time budget: {self.spent():.0f} s of {self.seconds:.0f} s spent, this case needs ~{need_s:.0f} s"


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    """benchmarks/_timing.py's summary (median, p90, min in milliseconds) with the number of runs."""
    if not times_ms:
        raise ValueError("no timed runs")
    from _timing import summary

    return {**summary(times_ms), "runs": len(times_ms)}


def compose_ratios(rows: list[dict[str, Any]], teacher: str, student: str, teacher_batch: int = 2, student_batch: int = 1,
                   teacher_steps: int = 50, student_steps: int = 4) -> list[dict[str, Any]]:
    """Teacher ÷ student UNet time per video at each (precision, mode) both were measured at: ``teacher_steps`` CFG
    calls (one call on the prompt and its unconditional twin, batch ``teacher_batch``) ÷ ``student_steps`` calls at
    ``student_batch``. UNet calls only: text encoder and VAE excluded."""
    def median(model: str, batch: int, precision: str, mode: str) -> float | None:
        for r in rows:
            if (r.get("model"), r.get("batch"), r.get("precision"), r.get("mode")) == (model, batch, precision, mode):
                return r.get("median_ms")
        return None

    out = []
    for precision in dict.fromkeys(r.get("precision") for r in rows):
        for mode in dict.fromkeys(r.get("mode") for r in rows):
            t, s = median(teacher, teacher_batch, precision, mode), median(student, student_batch, precision, mode)
            if t and s:
                out.append({"teacher": teacher, "student": student, "precision": precision, "mode": mode,
                            "teacher_calls": teacher_steps, "teacher_batch": teacher_batch, "student_calls": student_steps,
                            "student_batch": student_batch, "teacher_unet_ms_per_video": teacher_steps * t,
                            "student_unet_ms_per_video": student_steps * s, "teacher_over_student": teacher_steps * t / (student_steps * s)})
    return out


def gpu_slug(name: str | None) -> str:
    """File-name part of a GPU name: ``NVIDIA H200`` -> ``nvidia-h200``; no GPU -> ``no-gpu``."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug or "no-gpu"


def new_record(command: str, machine: dict[str, Any], probe: dict[str, Any], selection: dict[str, str | None],
               budget_s: float, dry_run: bool) -> dict[str, Any]:
    """The JSON result: every path starts as skipped (with its reason) or pending; ``skip`` records case-level skips."""
    record: dict[str, Any] = {
        "kind": "gpu_check", "schema_version": SCHEMA_VERSION, "command": command, "dry_run": dry_run, "machine": machine,
        "probe": probe, "budget": {"seconds": budget_s, "spent_s": 0.0, "stopped_by_budget": False},
        "paths": {}, "skipped": [], "rows": [], "ratios": [],
    }
    for path in PATHS:
        reason = selection[path] or ("--dry-run: would run" if dry_run else None)
        record["paths"][path] = {"status": "skipped" if reason else "pending", "reason": reason, "seconds": 0.0}
        if reason:
            record["skipped"].append({"path": path, "case": None, "reason": reason})
    return record


def skip(record: dict[str, Any], path: str, case: str | None, reason: str) -> None:
    record["skipped"].append({"path": path, "case": case, "reason": reason})
    print(f"skip {path}{' ' + case if case else ''}: {reason}", flush=True)


def write_record(record: dict[str, Any], out: Path) -> None:
    """Written after every path, so a run cut short (the shell's timeout) still leaves what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(out)


# --- probing ---------------------------------------------------------------------------------------------------------

def probe_imports() -> dict[str, Any]:
    """What imports here and what it reports; never raises."""
    p: dict[str, Any] = {}
    try:
        import torch

        p["torch"], p["torch_cuda_build"] = torch.__version__, torch.version.cuda
        p["cuda"] = bool(torch.cuda.is_available())
        if p["cuda"]:
            props = torch.cuda.get_device_properties(0)
            p.update(gpu_name=props.name, compute_capability=[props.major, props.minor], gpu_memory_bytes=props.total_memory,
                     gpu_count=torch.cuda.device_count(), bf16_supported=torch.cuda.is_bf16_supported())
        else:
            p["cuda_reason"] = "torch.cuda.is_available() is False" + ("" if torch.version.cuda else " (a CPU-only torch build)")
    except Exception as exc:
        p.update(cuda=False, cuda_reason=f"torch does not import: {type(exc).__name__}: {exc}")
    for name, key in (("diffusers", "diffusers"), ("cuda.bindings.runtime", "cuda_python")):
        try:
            __import__(name)
            p[key] = True
        except Exception:
            if key == "cuda_python":
                try:
                    from cuda import cudart  # noqa: F401  cuda-python < 12.6
                    p[key] = True
                    continue
                except Exception:
                    pass
            p[key] = False
    try:
        import onnxruntime

        p["onnxruntime"], p["ort_providers"] = onnxruntime.__version__, list(onnxruntime.get_available_providers())
    except Exception as exc:
        p.update(ort_providers=[], ort_reason=f"onnxruntime does not import: {type(exc).__name__}: {exc}")
    try:
        import tensorrt

        p["tensorrt_version"] = str(tensorrt.__version__)
    except Exception as exc:  # ImportError, or OSError when the bindings lack libnvinfer
        p["tensorrt_reason"] = f"{type(exc).__name__}: {exc}"
    try:
        from turbo_edge.core.pipeline_io import ALIASES

        p["builtin_models"] = all((ALIASES[a] / "model_index.json").is_file() for a in ("builtin", "builtin-student"))
    except Exception as exc:
        p.update(builtin_models=False, builtin_reason=f"{type(exc).__name__}: {exc}")
    return p


def machine_info(probe: dict[str, Any]) -> dict[str, Any]:
    import subprocess

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                            "loadavg_at_start": list(os.getloadavg()), "gpu_name": probe.get("gpu_name"),
                            "compute_capability": probe.get("compute_capability"), "gpu_memory_bytes": probe.get("gpu_memory_bytes"),
                            "torch": probe.get("torch"), "torch_cuda_build": probe.get("torch_cuda_build")}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except Exception as exc:
        info["nvidia_smi"] = f"{type(exc).__name__}: {exc}"
    if probe.get("cuda"):
        import torch

        info["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    return info


# --- GPU paths (written against torch.cuda / onnxruntime / TensorRT; unverified until a GPU runs them) ---------------

def cuda_event_times(fn: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Per-call device time in ms between CUDA events around ``fn``; synchronised after each call, so every call
    starts from an idle queue and its launch overhead is in the number."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def capture_graph(call: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
    """``call`` captured into a ``torch.cuda.CUDAGraph`` over its (static) input tensors: (replay, static output).
    Warm-up on a side stream first, as torch.cuda.graphs' documentation prescribes."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call()
    return graph.replay, out


def unet_inputs(batch: int, channels: int, frames: int, size: int, text_len: int, text_dim: int, guidance_dim: int | None,
                seed: int = 0) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = {"sample": torch.randn(batch, channels, frames, size, size, generator=g), "timestep": torch.full((batch,), 500.0),
         "encoder_hidden_states": torch.randn(batch, text_len, text_dim, generator=g)}
    if guidance_dim:
        x["timestep_cond"] = torch.randn(batch, guidance_dim, generator=g)
    return x


def unet_call(net: Any, args: dict[str, Any]) -> Callable[[], Any]:
    """One UNet call on fixed input tensors (what a CUDA graph captures)."""
    kw = {"timestep_cond": args["timestep_cond"]} if "timestep_cond" in args else {}
    return lambda: net(args["sample"], args["timestep"], encoder_hidden_states=args["encoder_hidden_states"], return_dict=False, **kw)[0]


def time_unet(record: dict[str, Any], path: str, model: str, unet: Any, inputs: dict[str, Any], precisions: tuple[str, ...],
              budget: Budget, warmup: int, runs: int, need_s: float, reference: Any = None) -> None:
    """Rows for one UNet at one batch: each precision eager and as a CUDA graph, parity vs ``reference`` (fp32 eager
    output; computed here when None and fp32 is measured)."""
    import copy

    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    batch = int(inputs["sample"].shape[0])
    for precision in precisions:
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            skip(record, path, f"{model} b{batch} bf16", "torch.cuda.is_bf16_supported() is False on this GPU")
            continue
        net = copy.deepcopy(unet).to("cuda", dtypes[precision]).eval() if precision != "fp32" else unet.to("cuda").eval()
        call = unet_call(net, {k: v.to("cuda", dtypes[precision]) for k, v in inputs.items()})
        for mode in MODES:
            case = f"{model} b{batch} {precision} {mode}"
            if not budget.allows(need_s):
                skip(record, path, case, budget.reason(need_s))
                continue
            row: dict[str, Any] = {"path": path, "model": model, "batch": batch, "precision": precision, "mode": mode,
                                   "input_shape": list(inputs["sample"].shape), "warmup": warmup}
            try:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                with torch.no_grad():
                    if mode == "eager":
                        fn, out = call, call()
                    else:
                        fn, out = capture_graph(call)
                        fn()
                    row.update(latency_stats(cuda_event_times(fn, warmup, runs)))
                    torch.cuda.synchronize()
                    out32 = out.float()
                    if precision == "fp32" and mode == "eager" and reference is None:
                        reference = out32.clone()
                    if reference is not None:
                        row["max_abs_diff_vs_fp32"] = float((out32 - reference).abs().max())
                    row["finite"] = bool(torch.isfinite(out32).all())
                row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
            except Exception as exc:  # one case failing (e.g. a capture error) is a result, not a lost run
                row["error"] = f"{type(exc).__name__}: {exc}"
            record["rows"].append(row)
            print(json.dumps(row), flush=True)
        if precision != "fp32":
            del net
        torch.cuda.empty_cache()


def run_builtin(record: dict[str, Any], budget: Budget, args: argparse.Namespace) -> None:
    from turbo_edge.core.pipeline_io import load_teacher

    for alias, batch in (("builtin", 2), ("builtin-student", 1)):
        m = load_teacher(alias)
        geo = m.family.geometry(m.unet)
        frames = int(m.card.frames or 8)
        x = unet_inputs(batch, geo.latent_channels, frames, int(m.unet.config.sample_size), int(m.tokenizer.model_max_length),
                        geo.text_dim, geo.guidance_dim, seed=args.seed)
        time_unet(record, "pytorch-cuda-builtin", alias, m.unet, x, PRECISIONS, budget, args.warmup, args.runs, need_s=5)
    record["ratios"] += compose_ratios(record["rows"], "builtin", "builtin-student", teacher_steps=args.teacher_steps,
                                       student_steps=args.student_steps)


def run_modelscope(record: dict[str, Any], budget: Budget, args: argparse.Namespace) -> None:
    import torch
    from diffusers import UNet3DConditionModel

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    with torch.device("cuda"):  # random init on the device: seconds, where 1.4 B parameters on the CPU take minutes
        unet = UNet3DConditionModel(**MODELSCOPE_UNET).eval()
    params = sum(p.numel() for p in unet.parameters())
    record["modelscope_unet"] = {"config": MODELSCOPE_UNET, "parameters": params, "build_s": time.perf_counter() - start,
                                 "frames": MODELSCOPE_FRAMES, "pixels": [256, 256], "latent": [32, 32], "text_len": MODELSCOPE_TEXT_LEN}
    for batch in (2, 1):
        x = unet_inputs(batch, 4, MODELSCOPE_FRAMES, 32, MODELSCOPE_TEXT_LEN, 1024, None, seed=args.seed)
        with torch.no_grad():  # the fp32 reference: one eager call, not timed
            ref = unet(*(x[k].cuda() for k in ("sample", "timestep")), encoder_hidden_states=x["encoder_hidden_states"].cuda(),
                       return_dict=False)[0].float()
        time_unet(record, "pytorch-cuda-modelscope", "modelscope-shaped", unet, x, ("fp16", "bf16"), budget,
                  args.warmup, args.runs, need_s=20, reference=ref)
        del ref
    del unet
    torch.cuda.empty_cache()
    record["ratios"] += compose_ratios(record["rows"], "modelscope-shaped", "modelscope-shaped", teacher_steps=args.teacher_steps,
                                       student_steps=args.student_steps)


def student_bundle(args: argparse.Namespace) -> Path:
    """The builtin student's UNet exported fp32 + fp16 (reused when up to date): the ORT and TensorRT paths' graphs."""
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    out = Path(args.work_dir) / "bundle-student"
    cfg = ExportConfig(precisions=("fp32", "fp16"), components=("unet",), openvino_check=False, threads=min(8, os.cpu_count() or 1))
    return export_bundle("builtin-student", out, cfg)


def _feeds(bundle: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]], dict[str, str]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_export import unet_feeds

    from turbo_edge.spec.bundle import verify_bundle

    entry = verify_bundle(bundle)["components"]["unet"]
    feeds = unet_feeds({"components": {"unet": entry}})
    out_name = entry["outputs"][0]["name"]
    shape = list(feeds["sample"].shape)
    return feeds, {out_name: tuple(shape)}, entry["files"]


def run_backend(backend: Any, model_file: Path, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]], warmup: int,
                runs: int) -> tuple[dict[str, float], Any]:
    """Host-clock latency of ``infer`` (host<->device copies included: the runtime's own interface) and the output."""
    from _timing import timed

    backend.load(model_file)
    binding = backend.allocate({k: v.shape for k, v in feeds.items()}, out_shapes)
    dtypes = backend.input_dtypes()
    for k, v in feeds.items():
        binding.inputs[k][...] = v.astype(dtypes.get(k, v.dtype))
    stats = timed(lambda: backend.infer(binding), warmup, runs)
    return stats, next(iter(binding.outputs.values())).astype("float32")


def _onnx_rows(record: dict[str, Any], path: str, budget: Budget, args: argparse.Namespace,
               cases: list[tuple[str, str, Callable[[], tuple[Any, Path]]]], bundle: Path) -> None:
    import numpy as np

    from turbo_edge.runtime.backends.ort import OrtCpuBackend

    feeds, out_shapes, files = _feeds(bundle)
    _, ref = run_backend(OrtCpuBackend(threads=min(8, os.cpu_count() or 1)), bundle / files["fp32"], feeds, out_shapes, 1, 1)
    for label, precision, make in cases:
        if not budget.allows(30):
            skip(record, path, label, budget.reason(30))
            continue
        row: dict[str, Any] = {"path": path, "model": "builtin-student", "backend": label, "precision": precision,
                               "input_shape": list(feeds["sample"].shape), "timing": "host clock, host<->device copies included"}
        try:
            backend, model_file = make()
            stats, out = run_backend(backend, model_file, feeds, out_shapes, args.warmup, args.runs)
            row.update(stats, runs=args.runs, max_abs_diff_vs_ort_cpu_fp32=float(np.abs(out - ref).max()))
            backend.close()
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        record["rows"].append(row)
        print(json.dumps(row), flush=True)


def run_ort_cuda(record: dict[str, Any], budget: Budget, args: argparse.Namespace) -> None:
    from turbo_edge.runtime.backends.ort import OrtCudaBackend

    bundle = student_bundle(args)
    files = _feeds(bundle)[2]
    cases = [(f"ort-cuda {p}", p, lambda p=p: (OrtCudaBackend(), bundle / files[p])) for p in ("fp32", "fp16") if p in files]
    _onnx_rows(record, "ort-cuda", budget, args, cases, bundle)


def run_tensorrt(record: dict[str, Any], budget: Budget, args: argparse.Namespace) -> None:
    from turbo_edge.export.tensorrt_build import build_engines
    from turbo_edge.runtime.backends.tensorrt import TensorRTBackend
    from turbo_edge.spec.bundle import load_bundle
    from turbo_edge.spec.configs import EngineConfig

    bundle = student_bundle(args)
    built = []
    for precision in ("fp16", "fp32"):
        if not budget.allows(90):
            skip(record, "tensorrt", f"engine {precision}", budget.reason(90))
            continue
        start = time.perf_counter()
        try:
            [plan] = build_engines(bundle, EngineConfig(bundle=str(bundle), precisions=(precision,), components=("unet",)))
            record.setdefault("tensorrt_engines", []).append({"precision": precision, "engine": plan.name,
                                                              "build_s": time.perf_counter() - start})
            built.append(precision)
        except Exception as exc:
            skip(record, "tensorrt", f"engine {precision}", f"build failed: {type(exc).__name__}: {exc}")
    b = load_bundle(bundle, runnable=False)
    cases = [(f"tensorrt {p} {'cuda_graph' if g else 'eager'}", p, lambda p=p, g=g: (TensorRTBackend(cuda_graph=g), b.engine_path("unet", p)))
             for p in built for g in (False, True)]
    _onnx_rows(record, "tensorrt", budget, args, cases, bundle)


RUNNERS: dict[str, Callable[[dict[str, Any], Budget, argparse.Namespace], None]] = {
    "pytorch-cuda-builtin": run_builtin, "pytorch-cuda-modelscope": run_modelscope, "ort-cuda": run_ort_cuda, "tensorrt": run_tensorrt,
}
MIN_SECONDS = {"pytorch-cuda-builtin": 20, "pytorch-cuda-modelscope": 60, "ort-cuda": 60, "tensorrt": 120}  # to start a path


def run_paths(record: dict[str, Any], budget: Budget, args: argparse.Namespace, out: Path,
              runners: dict[str, Callable[..., None]] = RUNNERS) -> None:
    """Each pending path in its own ``try``; the record is rewritten after each one."""
    for path in PATHS:
        entry = record["paths"][path]
        if entry["status"] != "pending":
            continue
        if not budget.allows(MIN_SECONDS[path]):
            entry.update(status="skipped", reason=budget.reason(MIN_SECONDS[path]))
            skip(record, path, None, entry["reason"])
            record["budget"].update(spent_s=budget.spent(), stopped_by_budget=True)
            write_record(record, out)
            continue
        start = time.perf_counter()
        print(f"== {path}", flush=True)
        try:
            runners[path](record, budget, args)
            failed = [r for r in record["rows"] if r.get("path") == path and "error" in r]
            entry.update(status="ran" if not failed else "ran, some cases failed")
        except Exception as exc:
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
            print(f"failed {path}: {entry['reason']}", flush=True)
        entry["seconds"] = time.perf_counter() - start
        record["budget"].update(spent_s=budget.spent(), stopped_by_budget=budget.stopped)
        write_record(record, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON to write (default: <out-dir>/gpu_<gpu-slug>.json)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work-dir", default=str(ROOT / "build" / "gpu_check"), help="where the ORT / TensorRT paths' bundle goes")
    ap.add_argument("--budget-s", type=float, default=420.0, help="no new case starts after this many seconds")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--student-steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--dry-run", action="store_true", help="probe only: record what would run and what is skipped")
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    probe = probe_imports()
    selection = select_paths(probe)
    if args.only:
        wanted = set(args.only.split(","))
        selection = {p: r if p in wanted else (r or "not in --only") for p, r in selection.items()}
    out = Path(args.out) if args.out else Path(args.out_dir) / f"gpu_{gpu_slug(probe.get('gpu_name'))}.json"
    command = " ".join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    if os.environ.get("GPU_CHECK_LAUNCHER"):
        command = f"{os.environ['GPU_CHECK_LAUNCHER']} (runs: {command})"
    record = new_record(command, machine_info(probe), probe, selection, args.budget_s, args.dry_run)
    for path, entry in record["paths"].items():
        print(f"{path}: {entry['reason'] or 'runs'}", flush=True)
    write_record(record, out)
    if not args.dry_run:
        run_paths(record, budget, args, out)
    record["budget"].update(spent_s=budget.spent(), stopped_by_budget=budget.stopped)
    write_record(record, out)
    print(f"wrote {out} ({budget.spent():.0f} s)")
    for r in record["ratios"]:
        print(f"teacher/student {r['teacher']} {r['precision']} {r['mode']}: {r['teacher_over_student']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
