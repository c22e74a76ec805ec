"""int8 vs fp32 on the CPU as the UNet grows: where NNCF int8 starts to pay in OpenVINO.

The builtin UNet3D (channels 32/64/64 at 8x8 latents) is launch-bound: about 800 small ops, half of the time in
fused elementwise kernels, so int8 matmuls cannot pay there. This script builds randomly initialised models of
the same architecture at wider channels, exports each with the project's own exporter (fp32 + NNCF int8 Q/DQ,
calibrated along the model's own DDIM trajectory), and times the UNet in OpenVINO side by side.

Standalone script (the library never imports it). Example:
    python benchmarks/bench_int8_scale.py --widths 1,2,4 --threads 2 --runs 20
Random weights: the parity figures are a sanity check of the quantizer, not a quality claim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _timing import timed  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def build_model(out: Path, width: int, seed: int = 0) -> Path:
    """A random text-to-video model of the builtin architecture with every UNet width multiplied by ``width``."""
    import torch
    from transformers import CLIPTokenizer

    from turbo_edge.core import world
    from turbo_edge.core.models import TinyTeacherSpec, build_scheduler, build_text_encoder, build_unet, build_vae
    from turbo_edge.core.pipeline_io import T2VModel, save_model
    from turbo_edge.spec.card import ModelCard
    from turbo_edge.spec.tokenizer_files import write_tokenizer

    base = TinyTeacherSpec()
    spec = replace(base, unet_channels=tuple(c * width for c in base.unet_channels))
    torch.manual_seed(seed)
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(out.parent / f"{out.name}_tok", spec.words, spec.max_length))
    model = T2VModel(build_unet(spec), build_vae(spec), build_text_encoder(spec, len(tokenizer)), tokenizer, build_scheduler(spec))
    card = ModelCard(kind="teacher", frames=spec.frames, closed_vocabulary=world.vocabulary(), default_guidance=3.0)
    return save_model(model, out, card=card)


def openvino_request(path: Path, feeds: dict[str, np.ndarray], threads: int, hint: str = "f32", profile: bool = False) -> Any:
    """An OpenVINO CPU infer request for ``path`` reshaped to the static shapes of ``feeds`` (PERF_COUNT with ``profile``)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({k: list(v.shape) for k, v in feeds.items()})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if profile:
        config["PERF_COUNT"] = "YES"
    return core.compile_model(model, "CPU", config).create_infer_request()


def openvino_time(path: Path, feeds: dict[str, np.ndarray], threads: int, hint: str, warmup: int, runs: int) -> float:
    request = openvino_request(path, feeds, threads, hint)
    return timed(lambda: request.infer(feeds), warmup, runs)["median_ms"]


def feeds_for(manifest: dict[str, Any], batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    entry = manifest["components"]["unet"]
    feeds = {}
    for spec in entry["inputs"]:
        shape = [batch, *entry["profile"]["opt"][spec["name"]][1:]]
        feeds[spec["name"]] = rng.standard_normal(shape).astype(np.float32)
    feeds["timestep"] = np.full((batch,), 500.0, np.float32)
    return feeds


def main() -> int:
    from turbo_edge.demo import unet_flops
    from turbo_edge.export import export_bundle, verify_bundle
    from turbo_edge.spec.configs import ExportConfig
    from turbo_edge.spec.host import host_int8_dot_flags

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="1,2,4", help="UNet channel multipliers of the builtin (32, 64, 64)")
    p.add_argument("--batches", default="2,1", help="UNet batch: 2 = teacher CFG pair, 1 = student")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--model-type", default="transformer", choices=["transformer", "default"])
    p.add_argument("--keep", default=None, help="keep the models and bundles in this directory (default: a temp dir)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8_scale.json"))
    args = p.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="int8_scale_"))
    rows: list[dict[str, Any]] = []
    try:
        for width in (int(w) for w in args.widths.split(",")):
            model_dir = build_model(work / f"model_x{width}", width)
            bundle = work / f"bundle_x{width}"
            cfg = ExportConfig(model=str(model_dir), out=str(bundle), precisions=("fp32", "int8"), threads=args.threads,
                               openvino_check=False, int8_model_type=args.model_type, int8_calibration_prompts=4,
                               int8_calibration_steps=10, default_steps=10)
            start = time.perf_counter()
            export_bundle(model_dir, bundle, cfg)
            export_s = time.perf_counter() - start
            manifest = verify_bundle(bundle)
            files = manifest["components"]["unet"]["files"]
            parity = json.loads((bundle / "parity.json").read_text())["onnxruntime"]["unet"]["int8"]
            from turbo_edge.core.pipeline_io import load_teacher

            n_params = sum(p.numel() for p in load_teacher(model_dir).unet.parameters())
            for batch in (int(b) for b in args.batches.split(",")):
                feeds = feeds_for(manifest, batch)
                fp32 = openvino_time(bundle / files["fp32"], feeds, args.threads, "f32", args.warmup, args.runs)
                bf16 = openvino_time(bundle / files["fp32"], feeds, args.threads, "bf16", args.warmup, args.runs)
                int8 = openvino_time(bundle / files["int8"], feeds, args.threads, "f32", args.warmup, args.runs)
                flops = unet_flops(model_dir, batch)
                row = {
                    "width": width, "unet_channels": [c * width for c in (32, 64, 64)], "unet_params": n_params, "batch": batch,
                    "gflops_per_call": flops / 1e9, "openvino_fp32_ms": fp32, "openvino_bf16_ms": bf16, "openvino_int8_ms": int8,
                    "fp32_over_int8": fp32 / int8, "fp32_over_bf16": fp32 / bf16, "fp32_gflops_per_s": flops / fp32 / 1e6,
                    "int8_mean_rel_error_random_weights": parity["mean_rel"], "export_seconds": export_s,
                    "int8_scope": cfg.int8_scope, "int8_overflow_fix": cfg.int8_overflow_fix,
                }
                rows.append(row)
                print(f"x{width} batch {batch}: {flops / 1e9:6.2f} GFLOP  fp32 {fp32:8.1f} ms  bf16 {bf16:8.1f} ms  int8 {int8:8.1f} ms  "
                      f"fp32/int8 {fp32 / int8:.2f}x", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "env": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": list(os.getloadavg()),
                    "int8_dot_product": host_int8_dot_flags() or []},
        "threads": args.threads, "runs": args.runs, "int8_model_type": args.model_type,
        "note": "random weights at the builtin architecture, widths multiplied; OpenVINO CPU, graphs reshaped to static shapes",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
