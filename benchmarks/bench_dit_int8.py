"""The DiT student's int8 gate and scope: ``builtin-dit-student`` exported fp32 + fp16 + int8 under each int8 scope,
each int8 transformer's parity against PyTorch and its 4-step videos on the held-out evaluator beside fp32's on the
same backend (OpenVINO CPU), the transformer's call latency fp32 / int8; writes ``benchmarks/results/dit_int8.json``.

Standalone script (the library never imports it). The issue's gate: OpenVINO int8 within 0.5 point of fp32 (content
and motion, 192 validation prompts); fp16 parity within its export tolerance (the export gates it, the manifest
records it). A scope names the transformer layers left fp32 (``int8_ignored_patterns``, regexes over ONNX node
names); the default export scope is whichever of them the figures pick (``export/dit.py`` ``INT8_IGNORED``).

    python benchmarks/bench_dit_int8.py --model builtin-dit-student --num 192 --threads 2 --work /work/runs/dit_int8
    python benchmarks/bench_dit_int8.py --num 4 --scopes all --work /tmp/dit_int8 --out /tmp/dit_int8.json    # smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _timing import summary, time_interleaved  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent

# Candidate scopes: the transformer's linear layers NNCF's transformer preset picks, minus the named ones.
SCOPES: dict[str, tuple[str, ...]] = {
    "all": (),
    # The embedders (timestep, guidance, text projection), the patch embedding and the output head: few FLOPs, and
    # the layers every token's scale and shift pass through (the DiT counterpart of the UNet's default scope).
    "no_embed_head": (r".*condition_embedder.*", r".*patch_embedding.*", r".*proj_out.*"),
    # ...and cross-attention (attn2: the text's keys / values), which FP8 turned to noise in one serving project.
    "no_embed_head_cross": (r".*condition_embedder.*", r".*patch_embedding.*", r".*proj_out.*", r".*attn2.*"),
}


def _export(model: str, out: Path, patterns: tuple[str, ...], precisions: tuple[str, ...], threads: int) -> tuple[Path, float]:
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    t0 = time.perf_counter()
    cfg = ExportConfig.make(model=model, out=str(out), precisions=precisions, int8_ignored_patterns=patterns, threads=threads, overwrite=True)
    return export_bundle(model, out, cfg), time.perf_counter() - t0


def _eval(bundle_or_model: str, args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    from turbo_edge.evaluate import quality_row, run_eval
    from turbo_edge.spec.configs.apps import EvalConfig

    return quality_row(run_eval(EvalConfig.make(model=bundle_or_model, steps=args.steps, prompts="val", num=args.num, seed=args.seed, **kw)))


def _quantized_nodes(bundle: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """QuantizeLinear count of the int8 transformer graph (Q/DQ) and how many MatMul / Gemm it leaves unquantized."""
    import onnx

    entry = manifest["components"]["unet"]["files"]["int8"]
    graph = onnx.load(str(bundle / entry), load_external_data=False).graph
    q_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    mm = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in graph.node), "matmul_gemm": len(mm),
            "matmul_gemm_fp32": sum(not any(i in q_inputs for i in n.input) for n in mm)}


def _transformer_ms(bundle: Path, manifest: dict[str, Any], threads: int, runs: int) -> dict[str, Any]:
    """One transformer call (the opt profile, batch 1) on OpenVINO CPU, fp32 and int8 interleaved."""
    import openvino as ov

    entry = manifest["components"]["unet"]
    rng = np.random.default_rng(0)
    dtypes = {i["name"]: i["dtype"] for i in entry["inputs"]}
    feeds = {name: (rng.standard_normal(shape).astype(np.float32) if dtypes[name] == "float32" else np.zeros(shape, np.int64))
             for name, shape in entry["profile"]["opt"].items()}
    core = ov.Core()
    calls = {}
    for precision in ("fp32", "int8"):
        compiled = core.compile_model(str(bundle / entry["files"][precision]), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        calls[precision] = (lambda r: lambda: r.infer(feeds))(request)
    times = time_interleaved(calls, warmup=2, runs=runs)  # seconds per call
    out = {p: summary([1e3 * s for s in t]) for p, t in times.items()}
    out["fp32_over_int8"] = out["fp32"]["median_ms"] / out["int8"]["median_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin-dit-student")
    ap.add_argument("--scopes", default=",".join(SCOPES), help=f"comma-separated, of {sorted(SCOPES)}")
    ap.add_argument("--num", type=int, default=192)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="timed transformer calls per precision")
    ap.add_argument("--work", default="runs/dit_int8")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dit_int8.json"))
    args = ap.parse_args()
    scopes = [s for s in args.scopes.split(",") if s]
    if unknown := [s for s in scopes if s not in SCOPES]:
        sys.exit(f"unknown scope(s) {unknown}; choose from {sorted(SCOPES)}")

    import torch

    from turbo_edge.spec import logs
    from turbo_edge.spec.host import cpu_flags, cpu_model_name

    logs.configure()  # stages and progress bars; third-party INFO / warnings only as the CLI shows them

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    flags = cpu_flags() or frozenset()
    result: dict[str, Any] = {
        "kind": "dit_int8", "model": args.model, "steps": args.steps, "num_prompts": args.num, "split": "val", "backend": "openvino",
        "machine": {"cpu": cpu_model_name(), "vnni": bool({"avx512_vnni", "avx_vnni"} & flags), "machine": platform.machine(), "threads": args.threads},
        "command": "python benchmarks/bench_dit_int8.py " + " ".join(sys.argv[1:]), "scopes": {}, "rows": {}, "gates": {},
    }
    out = Path(args.out)

    def write() -> None:
        out.write_text(json.dumps(result, indent=2) + "\n")

    result["rows"]["pytorch"] = {**_eval(args.model, args), "sampler": "PyTorch, the model directory"}
    fp32 = None
    for i, scope in enumerate(scopes):
        precisions = ("fp32", "fp16", "int8") if i == 0 else ("fp32", "int8")
        bundle, seconds = _export(args.model, work / scope, SCOPES[scope], precisions, args.threads)
        manifest = json.loads((bundle / "manifest.json").read_text())
        if fp32 is None:
            fp32 = _eval(str(bundle), args, backend="openvino", precision="fp32", threads=args.threads)
            result["rows"]["openvino_fp32"] = {**fp32, "sampler": "bundle fp32, OpenVINO CPU"}
            result["fp16_parity"] = {c: p["fp16"] for c, p in manifest["parity"].items() if "fp16" in p}
        row = _eval(str(bundle), args, backend="openvino", precision="int8", threads=args.threads)
        row["delta_content"] = row["content"] - fp32["content"]
        row["delta_motion"] = row["motion"] - fp32["motion"]
        row["sampler"] = f"bundle int8 (scope {scope}), OpenVINO CPU"
        result["rows"][f"openvino_int8_{scope}"] = row
        result["gates"][f"int8_{scope}_within_0.5_point_of_fp32"] = row["delta_content"] >= -0.005 and row["delta_motion"] >= -0.005
        result["scopes"][scope] = {"ignored_patterns": list(SCOPES[scope]), "export_seconds": round(seconds, 1),
                                   "parity_int8": manifest["parity"]["unet"]["int8"], **_quantized_nodes(bundle, manifest),
                                   "transformer_call": _transformer_ms(bundle, manifest, args.threads, args.runs)}
        write()
    print(json.dumps({"rows": {k: {m: v.get(m) for m in ("content", "motion", "fd")} for k, v in result["rows"].items()}, "gates": result["gates"]}, indent=1))


if __name__ == "__main__":
    main()
