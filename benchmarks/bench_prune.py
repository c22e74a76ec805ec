"""Pruning benchmark: UNet latency, parameters and FLOPs of the unpruned student vs the pruned ones, same run.

    python benchmarks/bench_prune.py --student builtin-student --pruned builtin-pruned --out benchmarks/results/prune.json
    python benchmarks/bench_prune.py --tiny --channels 32,64,64 --rule vdmini --channel-ratio 0.25   # random weights

Rows: ``student`` (unpruned), ``pruned`` (the block plan), and with ``--channel-ratio R`` (torch-pruning, internal
widths only) ``channel_pruned`` (the student's UNet at R) and ``block_channel_pruned`` (the block-pruned UNet at R:
blocks first, as ``turbo-edge prune --channel-ratio`` does). Latency does not depend on the weights, so ``--rule``
(or ``--plan``) applies a plan to the student's UNet directly when no trained pruned directory exists yet. All
UNets run interleaved (A, B, C, ...) after a warm-up, at fixed threads, batch 1, one consistency step's call
(timestep_cond included), PyTorch eager; medians reported. With a real student (not ``--tiny``) the student and
the pruned UNet are also exported to ONNX with the bundle's UNet contract (static, batch 1) and timed, interleaved,
in ONNX Runtime and OpenVINO fp32 (``fp32_onnx_same_inputs``; ``--no-onnx`` skips it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from _timing import time_interleaved  # benchmarks/ is on sys.path when a script runs


def _tiny_student_unet(channels: tuple[int, ...], w_dim: int) -> tuple[Any, dict[str, Any]]:
    from turbo_edge.core.models import TinyTeacherSpec, unet_from_config

    spec = TinyTeacherSpec(unet_channels=channels)
    config = {**spec.unet_config(), "time_cond_proj_dim": w_dim}
    torch.manual_seed(0)
    return unet_from_config(config).eval(), {"frames": spec.frames, "text_len": spec.max_length, "w_dim": w_dim}


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any] | None, dict[str, Any], str, Any]:
    """(student UNet, block-pruned UNet, its block plan, input shape, label, the student's T2VModel or None)."""
    from turbo_edge.core import replay
    from turbo_edge.spec import plan as plans

    if args.tiny:
        student, shape = _tiny_student_unet(tuple(int(c) for c in args.channels.split(",")), 8)
        source, model = f"random tiny UNet3D {args.channels}", None
    else:
        from turbo_edge.core.pipeline_io import load_teacher

        model = load_teacher(args.student)
        student = model.unet.eval()
        shape = {"frames": int(model.card.frames or 16), "text_len": model.tokenizer.model_max_length,
                 "w_dim": int(model.card.sampler.w_embedding_dim)}
        source = args.student
    if args.pruned:
        from turbo_edge.prune.artifact import load_pruned

        pruned_model = load_pruned(args.pruned)
        pruned = pruned_model.unet
        plan, channel_plan = plans.read_plans(pruned_model.path)
        if channel_plan is not None:  # its widths are pruned already: no block-only row to add channels to
            plan = None
        plan_name = f"{args.pruned} ({plan['rule'] if plan else 'channels'})"
    else:
        config = replay.base_config(student)
        plan = plans.read_plan(args.plan) if args.plan else plans.RULES[args.rule](config)
        pruned = replay.apply_plan(copy.deepcopy(student), plan)
        plan_name = args.plan or args.rule
    return student, pruned.eval(), plan, shape, f"{source} vs {plan_name}", model


def _channel_rows(student: Any, pruned: Any, plan: dict[str, Any] | None, ratio: float) -> dict[str, Any]:
    """The channel-pruned UNets (torch-pruning, magnitude importance) of the student and of the block-pruned one."""
    from turbo_edge.prune import channels

    if ratio <= 0:
        return {}
    rows = {"channel_pruned": channels.channel_prune(student, ratio)[0].eval()}
    if plan is not None:
        rows["block_channel_pruned"] = channels.channel_prune(pruned, ratio, block_plan=plan)[0].eval()
    return rows


def _inputs(unet: Any, shape: dict[str, Any], size: int) -> dict[str, Any]:
    cfg = unet.config
    return {
        "sample": torch.randn(1, cfg.in_channels, shape["frames"], size, size),
        "timestep": torch.tensor([499]),
        "encoder_hidden_states": torch.randn(1, shape["text_len"], cfg.cross_attention_dim),
        "timestep_cond": torch.randn(1, shape["w_dim"]),
    }


def _flops(unet: Any, inputs: dict[str, Any]) -> int:
    from turbo_edge.core.flops import count_flops

    return count_flops(lambda: unet(**inputs))


def _onnx_runners(unets: dict[str, Any], model: Any, inputs: dict[str, Any], threads: int, work: Path) -> dict[str, Any]:
    """``{"<unet>/onnxruntime": run, "<unet>/openvino": run}``: each UNet exported with the bundle's own contract
    (static shapes, batch 1, the student's guidance-embedding input), fp32, run on the same inputs."""
    from turbo_edge.export.contracts import ExportShapes, unet_component
    from turbo_edge.export.onnx_export import export_onnx
    from turbo_edge.export.parity import openvino_runner, ort_runner

    shapes = ExportShapes(frames=int(inputs["sample"].shape[2]), height=int(model.card.height or 32),
                          width=int(model.card.width or 32), max_batch=1, static=True, uses_cfg=False)
    feeds = {k: v.numpy().astype("float32") for k, v in inputs.items()}
    runners: dict[str, Any] = {}
    for name, unet in unets.items():
        view = copy.copy(model)
        view.unet = unet
        contract, module = unet_component(view, shapes)
        path = work / f"{name}.onnx"
        export_onnx(module, contract, path)
        for backend, run in (("onnxruntime", ort_runner(path, threads)), ("openvino", openvino_runner(path, threads, warmup=feeds))):
            runners[f"{name}/{backend}"] = lambda run=run: run(feeds)
    return runners


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="builtin-student")
    p.add_argument("--pruned", help="a pruned directory; without it the plan is applied to the student's UNet")
    p.add_argument("--plan", help="a pruning_plan.json (default: --rule)")
    p.add_argument("--rule", default="vdmini")
    p.add_argument("--tiny", action="store_true", help="random tiny UNet3D instead of --student (no files needed)")
    p.add_argument("--channels", default="32,64,64", help="--tiny's block_out_channels")
    p.add_argument("--channel-ratio", type=float, default=0.25, help="channel pruning ratio for the channel rows; 0: none")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--block", type=int, default=4,
                   help="calls of one UNet in a row per turn, the first untimed (4: a 4-step sampler, weights warm); 1: strict turns")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime / OpenVINO rows (they export each UNet first)")
    p.add_argument("--out", default="benchmarks/results/prune.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    student, pruned, plan, shape, label, model = _load(args)
    unets = {"student": student, "pruned": pruned, **_channel_rows(student, pruned, plan, args.channel_ratio)}
    size = int(student.config.sample_size)
    inputs = _inputs(student, shape, size)
    times = time_interleaved({name: (lambda unet=unet: unet(**inputs)) for name, unet in unets.items()}, args.warmup, args.runs,
                             block=args.block)
    onnx_rows: dict[str, Any] = {}
    if model is not None and not args.no_onnx:
        import tempfile

        with tempfile.TemporaryDirectory() as work:
            runners = _onnx_runners({"student": student, "pruned": pruned}, model, inputs, args.threads, Path(work))
            onnx_times = time_interleaved(runners, args.warmup, args.runs, block=args.block)
        for backend in ("onnxruntime", "openvino"):
            a, b = (1000 * statistics.median(onnx_times[f"{n}/{backend}"]) for n in ("student", "pruned"))
            onnx_rows[backend] = {"student_median_ms": a, "pruned_median_ms": b, "latency_speedup": a / b}
    rows = {}
    for name, unet in unets.items():
        rows[name] = {
            "median_ms": 1000 * statistics.median(times[name]),
            "min_ms": 1000 * min(times[name]),
            "params": sum(q.numel() for q in unet.parameters()),
            "flops": _flops(unet, inputs),
        }
    result = {
        "command": "python " + " ".join(sys.argv),
        "models": label,
        "input": {"batch": 1, "frames": shape["frames"], "latent": [size, size], "channels": int(student.config.in_channels)},
        "threads": args.threads,
        "warmup": args.warmup,
        "runs": args.runs,
        "block": args.block,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        **rows,
        "latency_speedup": rows["student"]["median_ms"] / rows["pruned"]["median_ms"],
        "params_ratio": rows["pruned"]["params"] / rows["student"]["params"],
        "flops_ratio": rows["pruned"]["flops"] / rows["student"]["flops"],
    }
    if onnx_rows:
        result["fp32_onnx_same_inputs"] = onnx_rows
    if len(unets) > 2:
        result["channel_ratio"] = args.channel_ratio
    for name in list(unets)[2:]:  # the same three figures per channel row, against the unpruned student
        key = name.removesuffix("_pruned")
        result[f"{key}_latency_speedup"] = rows["student"]["median_ms"] / rows[name]["median_ms"]
        result[f"{key}_params_ratio"] = rows[name]["params"] / rows["student"]["params"]
        result[f"{key}_flops_ratio"] = rows[name]["flops"] / rows["student"]["flops"]
    print(json.dumps({k: v for k, v in result.items() if k in ("models", "fp32_onnx_same_inputs") or k.endswith(("speedup", "_ratio"))}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
