"""GPU check: every GPU path that imports on this machine, timed, in one run under a time budget.

    bash benchmarks/gpu_check.sh              # writes benchmarks/results/gpu_<gpu-slug>.json
    python benchmarks/gpu_check.py --dry-run  # probes only: what would run, what is skipped and why

Paths, each in its own ``try`` (one failing or missing path is a recorded reason, never a failed run), in the order
they run (``PATHS``: the most valuable numbers first, so a budget or a timeout cuts the least valuable):
- ``pytorch-cuda-wan``, ``pytorch-cuda-wan-vae``, ``tensorrt-wan``: Wan2.1-T2V-1.3B's transformer at its own 480p clip
  (81 frames of 480x832, 32,760 tokens a call; teacher CFG call batch 2, student call batch 1; bf16 / fp16, eager and
  CUDA graph), the real AutoencoderKLWan decoding the whole clip in bf16 with its peak memory, and TensorRT engines
  built from ``turbo-edge export``'s Wan graphs; see ``gpu_check_wan.py``.
- ``pytorch-cuda-builtin``: the builtin teacher (batch 2, one CFG call) and student (batch 1) UNets in fp32 / fp16 /
  bf16, eager and replayed from a CUDA graph; CUDA-event latency, max abs diff vs fp32 eager, peak device memory.
- ``pytorch-cuda-modelscope``: a ModelScope-T2V-shaped UNet3D with random weights (built from its config, nothing
  downloaded), 16 frames at 256x256 (latent 32x32), fp16 / bf16, eager and CUDA graph.
- ``ort-cuda``: the student bundle's UNet graphs on ONNX Runtime's CUDAExecutionProvider (``runtime.backends.ort``).
- ``tensorrt``: engines built by ``turbo-edge engine``'s code (``export.tensorrt_build``), run by the ``tensorrt``
  backend with and without CUDA-graph replay; parity against ONNX Runtime CPU fp32.
Teacher ÷ student ratios are composed from UNet / transformer call medians: 50 CFG calls at batch 2 ÷ 4 calls at batch 1.
The record is rewritten after every path and every measured case, so a run cut short keeps what it measured.
``--device cpu --tiny`` runs the Wan paths at diffusers' Wan test sizes on a CPU (host clock, no CUDA graphs, the
engines planned but not built) to check the wiring end to end; it writes under ``--work-dir``, never into results/.
The pure parts (path selection, budget, ratios, the record) and the ``--device cpu --tiny`` run are unit-tested on CPU
(tests/benchmarks/test_gpu_check.py, test_gpu_check_wan.py); the GPU parts are written against torch.cuda, onnxruntime
and TensorRT 10's APIs and unverified until a GPU runs them. Standalone: the library never imports this.
"""

from __future__ import annotations

import argparse
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
if str(ROOT / "benchmarks") not in sys.path:  # _timing, _gpu, gpu_check_wan beside this file, also when a test loads it by path
    sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_wan as wan  # noqa: E402
from _gpu import Budget, add_row, capture_graph, cuda_event_times, latency_stats, run_backend, skip, write_record  # noqa: E402

# The order they run in: the real-shape numbers first (Wan2.1-1.3B's transformer, ModelScope T2V's UNet, Wan's decoder),
# then the TensorRT builds (long: an export and engine builds; the lent machines lack TensorRT), then the builtin models.
PATHS = ("pytorch-cuda-wan", "pytorch-cuda-modelscope", "pytorch-cuda-wan-vae", "tensorrt-wan", "pytorch-cuda-builtin", "ort-cuda",
         "tensorrt")
WAN_PATHS = ("pytorch-cuda-wan", "pytorch-cuda-wan-vae", "tensorrt-wan")
PRECISIONS = ("fp32", "fp16", "bf16")
MODES = ("eager", "cuda_graph")
SCHEMA_VERSION = 2  # 2: the Wan paths, ``device`` / ``tiny``, rows written as they are measured
# ModelScope T2V's UNet (damo-vilab/text-to-video-ms-1.7b unet/config.json), random weights.
MODELSCOPE_UNET: dict[str, Any] = {
    "sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 1024,
    "attention_head_dim": 64, "block_out_channels": (320, 640, 1280, 1280), "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
}
MODELSCOPE_FRAMES, MODELSCOPE_TEXT_LEN = 16, 77


# --- pure logic (unit-tested on CPU) ---------------------------------------------------------------------------------

def select_paths(probe: dict[str, Any], device: str = "cuda") -> dict[str, str | None]:
    """Each path -> None (runs) or the reason it is skipped, from ``probe``'s import results. ``device`` cpu (with
    ``--tiny``) runs the Wan paths' wiring only; every other path needs the GPU."""
    cuda = None if probe.get("cuda") else f"no CUDA device for PyTorch: {probe.get('cuda_reason') or 'torch.cuda.is_available() is False'}"
    builtin = None if probe.get("builtin_models") else "the builtin teacher / student are not built in this checkout"
    providers = probe.get("ort_providers") or []
    ort = None if "CUDAExecutionProvider" in providers else (
        f"onnxruntime reports no CUDAExecutionProvider (providers {providers}; {probe.get('ort_reason') or 'CPU build'})")
    trt = None if probe.get("tensorrt_version") else f"tensorrt does not import ({probe.get('tensorrt_reason') or 'not installed'})"
    cuda_python = None if probe.get("cuda_python") else "cuda-python does not import (the tensorrt backend's CUDA calls need it)"
    diffusers = None if probe.get("diffusers") else "diffusers does not import"
    onnxruntime = None if probe.get("onnxruntime") else "onnxruntime does not import (the export's parity gates and the reference need it)"
    if device == "cpu":
        off = "--device cpu runs the Wan paths' wiring only (--tiny)"
        return {p: (diffusers or (onnxruntime if p == "tensorrt-wan" else None)) if p in WAN_PATHS else off for p in PATHS}
    return {
        "pytorch-cuda-wan": cuda or diffusers,
        "pytorch-cuda-modelscope": cuda or diffusers,
        "pytorch-cuda-wan-vae": cuda or diffusers,
        "tensorrt-wan": trt or cuda or cuda_python or diffusers or onnxruntime,  # its model directory is written here: no checkout assets
        "pytorch-cuda-builtin": cuda or builtin,
        "ort-cuda": ort or builtin,  # its bundle is exported from the builtin student
        "tensorrt": trt or cuda or cuda_python or builtin,
    }


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
               budget_s: float, dry_run: bool, device: str = "cuda", tiny: bool = False) -> dict[str, Any]:
    """The JSON result: every path starts as skipped (with its reason) or pending; ``skip`` records case-level skips.
    ``device`` names where it ran: the GPU's name for a CUDA run (the results page shows it), else ``cpu``."""
    gpu = machine.get("gpu_name") if device == "cuda" else None
    record: dict[str, Any] = {
        "kind": "gpu_check", "schema_version": SCHEMA_VERSION, "command": command, "dry_run": dry_run,
        "device": {"kind": device, "name": gpu or ("cpu" if device == "cpu" else None), "gpu_results": bool(gpu) and not tiny and not dry_run},
        "tiny": tiny, "machine": machine, "probe": probe, "budget": {"seconds": budget_s, "spent_s": 0.0, "stopped_by_budget": False},
        "paths": {}, "skipped": [], "rows": [], "ratios": [],
    }
    for path in PATHS:
        reason = selection[path] or ("--dry-run: would run" if dry_run else None)
        record["paths"][path] = {"status": "skipped" if reason else "pending", "reason": reason, "seconds": 0.0}
        if reason:
            record["skipped"].append({"path": path, "case": None, "reason": reason})
    return record


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
              budget: Budget, args: argparse.Namespace, need_s: float, reference: Any = None) -> None:
    """Rows for one UNet at one batch: each precision eager and as a CUDA graph, parity vs ``reference`` (fp32 eager
    output; computed here when None and fp32 is measured)."""
    import copy

    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    warmup, runs = args.warmup, args.runs
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
            add_row(record, row, getattr(args, "out_path", None))
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
        time_unet(record, "pytorch-cuda-builtin", alias, m.unet, x, PRECISIONS, budget, args, need_s=5)
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
        time_unet(record, "pytorch-cuda-modelscope", "modelscope-shaped", unet, x, ("fp16", "bf16"), budget, args,
                  need_s=20, reference=ref)
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
        add_row(record, row, getattr(args, "out_path", None))


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


def run_wan(record: dict[str, Any], budget: Budget, args: argparse.Namespace) -> None:
    wan.run_transformer(record, budget, args)
    model = wan.MODEL[bool(args.tiny)]
    record["ratios"] += compose_ratios(record["rows"], model, model, teacher_steps=args.teacher_steps, student_steps=args.student_steps)


RUNNERS: dict[str, Callable[[dict[str, Any], Budget, argparse.Namespace], None]] = {
    "pytorch-cuda-wan": run_wan, "pytorch-cuda-modelscope": run_modelscope, "pytorch-cuda-wan-vae": wan.run_vae,
    "tensorrt-wan": wan.run_tensorrt, "pytorch-cuda-builtin": run_builtin, "ort-cuda": run_ort_cuda, "tensorrt": run_tensorrt,
}
# Seconds left to start a path (full size; --tiny: TINY_MIN_SECONDS). Estimates for an H100, unverified: the Wan
# transformer ~100 s (one fp32 reference call, 8 cases of 1-2 s calls), the decoder ~40 s, tensorrt-wan ~4-6 min
# (its model directory, the export on the CPUs, three engine builds); it is started only with enough left for the
# export and the transformer's engine.
MIN_SECONDS = {"pytorch-cuda-wan": 60, "pytorch-cuda-modelscope": 60, "pytorch-cuda-wan-vae": 45, "tensorrt-wan": 240,
               "pytorch-cuda-builtin": 20, "ort-cuda": 60, "tensorrt": 120}
TINY_MIN_SECONDS = 5


def run_paths(record: dict[str, Any], budget: Budget, args: argparse.Namespace, out: Path,
              runners: dict[str, Callable[..., None]] = RUNNERS) -> None:
    """Each pending path in its own ``try``; the record is rewritten after each one."""
    for path in PATHS:
        entry = record["paths"][path]
        if entry["status"] != "pending":
            continue
        need = TINY_MIN_SECONDS if getattr(args, "tiny", False) else MIN_SECONDS[path]
        if not budget.allows(need):
            entry.update(status="skipped", reason=budget.reason(need))
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


def apply_only(selection: dict[str, str | None], only: str | None) -> dict[str, str | None]:
    """``--only a,b``: the other paths skipped with "not in --only"; a name that is not a path is an error."""
    if not only:
        return selection
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in selection]
    if unknown or not wanted:
        raise ValueError(f"--only names {unknown or only!r}; the paths are {','.join(PATHS)}")
    return {p: r if p in wanted else (r or "not in --only") for p, r in selection.items()}


def default_out(out: str | None, out_dir: str, work_dir: str, gpu_name: str | None, device: str, tiny: bool, only: str | None = None) -> Path:
    """``--out``, else ``<out-dir>/gpu_<gpu-slug>.json`` for a GPU run at full size, ``gpu_<gpu-slug>_<path>+<path>.json``
    for an ``--only`` run (so a second command on the same GPU keeps the first one's file); a ``--tiny`` run (a wiring
    check, not a measurement) goes to ``<work-dir>/gpu_<gpu-slug or cpu>_tiny.json``, never into the results directory."""
    if out:
        return Path(out)
    slug = gpu_slug(gpu_name) if device == "cuda" else "cpu"
    if tiny:
        return Path(work_dir) / f"gpu_{slug}_tiny.json"
    chosen = [p for p in PATHS if only and p in {w.strip() for w in only.split(",")}]
    return Path(out_dir) / (f"gpu_{slug}_{'+'.join(chosen)}.json" if chosen else f"gpu_{slug}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON to write (default: <out-dir>/gpu_<gpu-slug>.json; with --only, gpu_<gpu-slug>_<paths>.json)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work-dir", default=str(ROOT / "build" / "gpu_check"), help="where the ORT / TensorRT paths' bundles and models go")
    ap.add_argument("--budget-s", type=float, default=420.0, help="no new case starts after this many seconds")
    ap.add_argument("--runs", type=int, default=30, help="timed calls per case (the Wan cases: at most this many, see --wan-seconds)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--wan-seconds", type=float, default=6.0, help="timed seconds per Wan case: its runs are as many calls as fit, 3 at least")
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--student-steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the Wan paths' wiring at --tiny sizes (no GPU figures)")
    ap.add_argument("--tiny", action="store_true", help="the Wan paths at diffusers' Wan test sizes (seconds; a wiring check, not a measurement)")
    ap.add_argument("--dry-run", action="store_true", help="probe only: record what would run and what is skipped")
    args = ap.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        ap.error("--device cpu runs the Wan paths at --tiny sizes only (a 1.4 B-parameter transformer at 32,760 tokens is a GPU job)")
    budget = Budget(args.budget_s)
    probe = probe_imports()
    try:
        selection = apply_only(select_paths(probe, args.device), args.only)
    except ValueError as exc:
        ap.error(str(exc))
    out = default_out(args.out, args.out_dir, args.work_dir, probe.get("gpu_name"), args.device, args.tiny, args.only)
    args.out_path = out  # runners rewrite the record after every measured case
    command = " ".join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    if os.environ.get("GPU_CHECK_LAUNCHER"):
        command = f"{os.environ['GPU_CHECK_LAUNCHER']} (runs: {command})"
    record = new_record(command, machine_info(probe), probe, selection, args.budget_s, args.dry_run, args.device, args.tiny)
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
