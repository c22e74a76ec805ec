"""What the toolchain buys at a real model's shape: ModelScope T2V's UNet3D, random weights, on this CPU.

    python benchmarks/bench_real_shape.py                 # ModelScope shape, 128x128, 8 frames (~1 h on 2 cores)
    python benchmarks/bench_real_shape.py --shape tiny    # the same chain at a reduced width, in about a minute
    python benchmarks/bench_real_shape.py --family wan    # Wan2.1-T2V-1.3B's DiT at 17 x 256 x 256 (benchmarks/_real_shape_wan.py)

Latency does not depend on the weights' values, so the subject is ModelScope T2V's architecture with random
weights, saved with the pinned diffusers / transformers exactly as a user's checkpoint is (``save_pretrained``):
the UNet of damo-vilab/text-to-video-ms-1.7b (320/640/1280/1280, two layers per block, cross-attention 1024,
head dim 64: 1.41 B parameters), Stable Diffusion's VAE (128/256/512/512) and an OpenCLIP ViT-H-sized text
encoder (24 layers, width 1024). The chain is the toolchain's own: ``turbo-edge export`` writes the fp32 bundle
(text encoder, UNet with external data, VAE decoder), the VDMini block plan and the channel plan are applied by
the prune stage's code, int8 is NNCF's Q/DQ through ``export.quantize``, and the ONNX graphs run through the
runtime's own backends (ONNX Runtime, OpenVINO CPU) as ``turbo-edge generate --bundle`` runs them.

Per-call times are measured side by side, interleaved (``_timing.time_interleaved``), with every variant of one
backend loaded at once; per-video figures are composed from the measured stage medians (a 50-step CFG teacher
video would take many minutes here). Everything it writes goes to ``--work`` (artifacts are reused when their
recipe matches) and one JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import summary, time_interleaved  # noqa: E402

SCHEMA = 1
# damo-vilab/text-to-video-ms-1.7b unet/config.json (the same dict as gpu_check.MODELSCOPE_UNET).
MODELSCOPE_UNET: dict[str, Any] = {
    "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 1024, "attention_head_dim": 64,
    "block_out_channels": (320, 640, 1280, 1280), "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
}
SD_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "scaling_factor": 0.18215,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
}
VIT_H_TEXT: dict[str, Any] = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                              "projection_dim": 1024, "hidden_act": "gelu", "max_position_embeddings": 77}
TINY = {  # the same architecture families at a width that runs in seconds (the script's own test)
    "unet": {**MODELSCOPE_UNET, "block_out_channels": (32, 64, 128, 128), "cross_attention_dim": 64, "attention_head_dim": 16, "norm_num_groups": 16},
    "vae": {**SD_VAE, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 16},
    "text": {**VIT_H_TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "projection_dim": 64},
}
SHAPES = {"modelscope": {"unet": MODELSCOPE_UNET, "vae": SD_VAE, "text": VIT_H_TEXT}, "tiny": TINY}
GUIDANCE_DIM = 256  # T2V-Turbo's guidance (w) embedding: the student UNet's only extra input
TEACHER_STEPS, STUDENT_STEPS = 50, (4, 1)
TINY_WIDTH = 64  # the tiny decoder timed beside the full one: the width `decoder train` defaults to (DecoderTrainConfig.width)
GOALS = {"loop_4_step": 22.0, "loop_1_step": 85.0, "prune_vs_flops": 0.9, "ov_int8_vs_fp32": 2.0, "ort_vs_eager": 1.3, "achieved_vs_peak": 0.4,
         # the decoder issue's: a decoder call full / tiny, and per video the 50-step CFG teacher with the full decoder over
         # the student with the tiny one, 4 steps and 1 step
         "decoder_full_over_tiny": 5.0, "video_4_step_tiny": 22.0, "video_1_step_tiny": 60.0}


# ------------------------------------------------------------------ small helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_gib() -> float:
    """Current resident set of this process (GiB), from ``spec.host.process_memory``."""
    from turbo_edge.spec.host import process_memory

    return process_memory().get("rss_mib", 0.0) / 1024


def peak_rss_gib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 2**20


def recipe_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:12]


def cached(path: Path, recipe: dict[str, Any]) -> bool:
    """True when ``path`` holds what ``recipe`` makes (its stamp file says so)."""
    stamp = path.with_name(path.name + ".recipe.json")
    return path.exists() and stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(recipe, sort_keys=True, default=list))


def stamp(path: Path, recipe: dict[str, Any]) -> None:
    path.with_name(path.name + ".recipe.json").write_text(json.dumps(recipe, sort_keys=True, default=list))


def machine(threads: int) -> dict[str, Any]:
    """``turbo-edge bench``'s machine record (CPU, flags, cores, load, fp32 peak) and the machine's memory."""
    from turbo_edge.bench.common import machine_info

    return {**machine_info(threads), "mem_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)}


def cpu_slug(m: dict[str, Any]) -> str:
    return "vnni" if "avx512_vnni" in m["flags"] else "avx512" if "avx512f" in m["flags"] else "avx2"


# ------------------------------------------------------------------ 1. the model directory (save_pretrained, random weights)


def build_teacher(work: Path, shape: str, seed: int, cfg: dict[str, Any] | None = None) -> Path:
    """A diffusers TextToVideoSDPipeline directory of the shape (``SHAPES[shape]``, or ``cfg``: its ``unet`` / ``vae`` /
    ``text`` configs), random weights, written by ``save_pretrained``; reused when ``work/teacher`` has that recipe."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from turbo_edge.core.pipeline_io import resolve_model_path

    out = work / "teacher"
    cfg = cfg or SHAPES[shape]
    recipe = {"what": "teacher", "shape": shape, "seed": seed, **cfg}
    if cached(out, recipe):
        log(f"teacher: reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(seed)
    # The builtin tokenizer (CLIP BPE, the world's words), at ModelScope's 77 tokens: latency depends on the
    # sequence length, not on which words the vocabulary has.
    tokenizer = CLIPTokenizer.from_pretrained(resolve_model_path("builtin") / "tokenizer")
    tokenizer.model_max_length = 77
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **cfg["text"]))
    pipe = TextToVideoSDPipeline(
        vae=AutoencoderKL(**cfg["vae"]), text_encoder=text, tokenizer=tokenizer,
        unet=UNet3DConditionModel(**cfg["unet"]),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, prediction_type="epsilon"),
    )
    start = time.perf_counter()
    pipe.save_pretrained(out, safe_serialization=True)
    stamp(out, recipe)
    log(f"teacher: wrote {out} in {time.perf_counter() - start:.0f} s")
    return out


# ------------------------------------------------------------------ 2. the fp32 bundle (turbo-edge export)


def export_bundle(work: Path, teacher: Path, frames: int, size: int, threads: int, record: dict[str, Any]) -> Path:
    out = work / "bundle"
    recipe = {"what": "bundle", "teacher": json.loads(teacher.with_name(teacher.name + ".recipe.json").read_text()),
              "frames": frames, "size": size}
    if cached(out, recipe):
        log(f"bundle: reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "turbo_edge.cli", "export", "--model", str(teacher), "--out", str(out), "--precision", "fp32",
           "--frames", str(frames), "--height", str(size), "--width", str(size), "--max-batch", "1", "--threads", str(threads),
           "--set", "openvino_check=false"]
    log("bundle: " + " ".join(cmd[2:]))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    record["stages"]["export_fp32"] = {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak_rss_gib(resource.RUSAGE_CHILDREN), 2),
                                       "command": "turbo-edge " + " ".join(cmd[3:])}
    stamp(out, recipe)
    return out


# ------------------------------------------------------------------ 3. the UNet variants (torch) and their graphs


def tiny_decoder_graph(teacher: Path, work: Path, frames: int, size: int, width: int, seed: int,
                       record: dict[str, Any]) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A tiny decoder for the shape's autoencoder (``TinyDecoder`` at ``width`` as ``decoder train`` builds it: per
    frame for an ``AutoencoderKL``, with the causal time upsampling for an ``AutoencoderKLWan``; random weights, latency
    does not depend on them) exported through the export stage's own variant contract (``contracts`` /
    ``dit.decoder_variant_component``: the denoiser's latents [1, C, f, h, w] in, the full decoder's clip out); returns
    the graph and its output shapes. Timed beside the bundle's full decoder (``stage_times_bundle``), so the per-video
    figures with it come from the same group as the full decoder's."""
    import torch

    from turbo_edge.core.tiny_decoder import TinyDecoder

    vae_cfg = json.loads((teacher / "vae" / "config.json").read_text())
    causal = vae_cfg.get("_class_name") == "AutoencoderKLWan"
    path = work / f"tiny_decoder_w{width}.onnx"
    recipe = {"what": "tiny_decoder", "teacher": recipe_hash(json.loads((teacher.with_name(teacher.name + ".recipe.json")).read_text())),
              "frames": frames, "size": size, "width": width, "seed": seed}
    torch.manual_seed(seed)
    decoder = (TinyDecoder.for_autoencoder_wan if causal else TinyDecoder.for_autoencoder_kl)(vae_cfg, width=width).eval()
    out_shapes = {"image": (1, frames, 3, size, size)}  # the full decoder's clip, frame for frame
    record.setdefault("decoders", {})["tiny"] = {"class": "TinyDecoder", "width": width, "channels": list(decoder.config.channels),
                                                 "parameters": sum(q.numel() for q in decoder.parameters()), "graph": path.name}
    if cached(path, recipe):
        return path, out_shapes
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.export import contracts, dit
    from turbo_edge.export.onnx_export import export_onnx

    model = dataclasses.replace(load_teacher(teacher), text_encoder=None)  # the contract reads the denoiser's geometry
    gc.collect()
    shapes = contracts.ExportShapes(frames=frames, height=size, width=size, max_batch=1, min_frames=frames, max_frames=frames)
    contract, module = (dit if causal else contracts).decoder_variant_component(model, shapes, "tiny", decoder)
    log(f"export: {path.name} (a width-{width} tiny decoder, random weights)")
    export_onnx(module, contract, path)
    stamp(path, recipe)
    del model
    gc.collect()
    return path, out_shapes


def plans(teacher_unet_config: dict[str, Any], work: Path, channel_ratio: float, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The VDMini block plan and the channel plan over it, made for the student's architecture (w embedding
    included) as `turbo-edge prune` makes them; the channel plan is computed once (torch-pruning) and kept."""
    from turbo_edge.core.replay import build_pruned_unet
    from turbo_edge.prune.channels import make_channel_plan
    from turbo_edge.spec.plan import read_plan, vdmini_plan, write_plan

    student_config = {k: v for k, v in teacher_unet_config.items() if not k.startswith("_")} | {"time_cond_proj_dim": GUIDANCE_DIM}
    plan = vdmini_plan(student_config)
    path = work / "channel_plan.json"
    recipe = {"what": "channel_plan", "plan": plan["architecture_hash"], "ratio": channel_ratio}
    if cached(path, recipe):
        return plan, read_plan(path)
    start = time.perf_counter()
    channel_plan = make_channel_plan(build_pruned_unet(plan).eval(), channel_ratio, block_plan=plan)
    gc.collect()
    record["stages"]["channel_plan_s"] = round(time.perf_counter() - start, 1)
    write_plan(channel_plan, path)
    stamp(path, recipe)
    return plan, channel_plan


def student_unet(teacher: Path) -> Any:
    """The student's UNet: the teacher's plus T2V-Turbo's w embedding (``timestep_cond``), one extra linear layer."""
    from diffusers import UNet3DConditionModel

    base = UNet3DConditionModel.from_pretrained(teacher / "unet")
    student = UNet3DConditionModel.from_config({**dict(base.config), "time_cond_proj_dim": GUIDANCE_DIM}).eval()
    missing = student.load_state_dict(base.state_dict(), strict=False).missing_keys
    if not all("cond_proj" in k for k in missing):
        raise RuntimeError(f"the student UNet lacks teacher weights: {missing[:4]}")
    return student


def pruned_unets(plan: dict[str, Any], channel_plan: dict[str, Any]) -> dict[str, Any]:
    """The two pruned UNets rebuilt from their plans (random weights: latency only)."""
    from turbo_edge.core.replay import build_pruned_unet

    return {"vdmini": build_pruned_unet(plan).eval(), "vdmini_ch": build_pruned_unet(plan, channel_plan).eval()}


def export_pruned(teacher: Path, bundle: Path, work: Path, frames: int, size: int, plan: dict[str, Any], channel_plan: dict[str, Any],
                  record: dict[str, Any]) -> dict[str, Path]:
    """The pruned UNets' ONNX graphs through the export stage's own UNet contract; the unpruned one is the bundle's.
    One UNet in memory at a time (a 1.4 B-parameter UNet's TorchScript export holds several copies of its weights)."""
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.replay import build_pruned_unet
    from turbo_edge.export.contracts import ExportShapes, unet_component
    from turbo_edge.export.onnx_export import export_onnx

    graphs = {"unpruned": bundle / "unet.onnx"}
    shapes = ExportShapes(frames=frames, height=size, width=size, max_batch=1)
    model = None
    for name in ("vdmini", "vdmini_ch"):
        path = work / f"unet_{name}.onnx"
        recipe = {"what": name, "bundle": recipe_hash(json.loads((bundle / "manifest.json").read_text())["files"]),
                  "plan": plan["removed"], "channel_plan": recipe_hash(channel_plan) if name == "vdmini_ch" else None}
        graphs[name] = path
        if cached(path, recipe):
            continue
        if model is None:
            model = load_teacher(teacher)
            model.unet = None  # the contract needs the text encoder / VAE geometry, not the teacher's weights
            gc.collect()
        unet = build_pruned_unet(plan, channel_plan if name == "vdmini_ch" else None).eval()
        contract, module = unet_component(dataclasses.replace(model, denoiser=unet), shapes)
        start = time.perf_counter()
        export_onnx(module, contract, path)
        record["stages"][f"export_{name}_s"] = round(time.perf_counter() - start, 1)
        stamp(path, recipe)
        del unet, contract, module
        gc.collect()
    return graphs


def quantize(graph: Path, work: Path, feeds: list[dict[str, Any]], model_type: str, record: dict[str, Any]) -> Path:
    """NNCF int8 of the unpruned UNet as OpenVINO IR with int8 weights: the export stage's own large-model route
    (``export.quantize.quantize_int8_openvino``, ``int8_format=openvino``), calibrated on a few of the sampler's own latents.

    Why not the bundle's Q/DQ path (NNCF's ONNX backend): it holds the 5.4 GB graph several times over (the model, its
    copy with statistics outputs, an ONNX Runtime session over that copy) and was killed for memory twice at 22 GB on
    this 24 GiB machine. The figure here is latency, which does not depend on the scales, so calibration is bounded
    to a handful of inputs and bias correction is off.
    """
    from turbo_edge.export.quantize import Int8Options, quantize_int8_openvino
    from turbo_edge.spec.configs.deploy import ExportConfig
    from turbo_edge.spec.host import host_overflow_fix

    out = work / f"unet.int8_{model_type}.xml"
    recipe = {"what": "int8_ov", "src": graph.stat().st_size, "model_type": model_type, "feeds": len(feeds)}
    if cached(out, recipe):
        return out
    start = time.perf_counter()
    options = Int8Options(model_type=model_type, ignored_patterns=ExportConfig().int8_ignored_patterns, subset_size=len(feeds),
                          bias_correction=False, overflow_fix=host_overflow_fix())
    quantize_int8_openvino(graph, out, feeds, options)
    record["stages"][f"int8_{model_type}_s"] = round(time.perf_counter() - start, 1)
    record["stages"][f"int8_{model_type}_peak_rss_gib"] = round(peak_rss_gib(), 2)
    stamp(out, recipe)
    return out


# ------------------------------------------------------------------ inputs


def unet_feeds(config: dict[str, Any], frames: int, latent: int, batch: int, seed: int, timestep: float = 499.0, cond: bool = False) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {
        "sample": rng.standard_normal((batch, config["in_channels"], frames, latent, latent), dtype=np.float32),
        "timestep": np.full((batch,), timestep, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((batch, 77, config["cross_attention_dim"]), dtype=np.float32),
    }
    if cond:
        feeds["timestep_cond"] = rng.standard_normal((batch, GUIDANCE_DIM), dtype=np.float32)
    return feeds


def torch_call(module: Any, feeds: dict[str, Any]) -> Any:
    import torch

    args = {k: torch.from_numpy(v) for k, v in feeds.items()}

    def call() -> Any:
        with torch.inference_mode():
            return module(args["sample"], args["timestep"], encoder_hidden_states=args["encoder_hidden_states"],
                          timestep_cond=args.get("timestep_cond"), return_dict=False)[0]

    return call


def backend_call(backend: Any, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]]) -> Any:
    binding = backend.allocate({k: v.shape for k, v in feeds.items()}, out_shapes)
    for name, value in feeds.items():
        binding.inputs[name][...] = value
    return lambda: backend.infer(binding)


def load_backend(kind: str, path: Path, threads: int, precision_hint: str = "f32") -> Any:
    """The runtime's own backend for ``kind`` over ``path``; OpenVINO with its precision hint (it reads the int8 IR too)."""
    from turbo_edge.runtime.backends import create_backend
    from turbo_edge.runtime.backends.openvino_cpu import OpenVinoCpuBackend

    if kind == "openvino":
        backend = OpenVinoCpuBackend(threads=threads, inference_precision=precision_hint)
    else:
        backend = create_backend({"ort": "ort-cpu"}.get(kind, kind), threads=threads)
    backend.load(path)
    return backend


# ------------------------------------------------------------------ timing groups


def ms(times_s: list[float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in summary([t * 1e3 for t in times_s]).items()}


def run_group(name: str, calls: dict[str, Any], warmup: int, runs: int, record: dict[str, Any]) -> dict[str, dict[str, float]]:
    log(f"timing {name}: {', '.join(calls)} ({warmup} warm-up + {runs} runs each, interleaved)")
    times = time_interleaved(calls, warmup=warmup, runs=runs)
    rows = {k: ms(v) for k, v in times.items()}
    for k, v in rows.items():
        record["rows"].append({"group": name, "call": k, **v, "rss_gib": round(rss_gib(), 2)})
        log(f"  {k:28s} median {v['median_ms']:10.1f} ms  min {v['min_ms']:10.1f}")
    return rows


def out_shape(feeds: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {"out_sample": feeds["sample"].shape}


def ort_profile(path: Path, feeds: dict[str, Any], threads: int, top: int = 12) -> dict[str, Any]:
    """ONNX Runtime's profiler over one call: milliseconds per op type, largest first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.parent / f"ort_profile_{path.stem}")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    trace = Path(sess.end_profiling())
    by_op: dict[str, float] = {}
    for ev in json.loads(trace.read_text()):
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + ev["dur"] / 1e3
    trace.unlink()
    return _top(by_op, top)


def ov_profile(path: Path, feeds: dict[str, Any], threads: int, hint: str = "f32", top: int = 12) -> dict[str, Any]:
    """OpenVINO's PERF_COUNT over one call: milliseconds per executed layer type (with its kernel), largest first."""
    import openvino as ov

    core = ov.Core()
    if path.suffix == ".xml":
        m = core.read_model(str(path))
    else:
        onnx = ov.frontend.FrontEndManager().load_by_framework("onnx")
        m = onnx.convert(onnx.load(str(path)))
    m.reshape({k: list(v.shape) for k, v in feeds.items()})
    compiled = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_PRECISION_HINT": hint, "PERF_COUNT": "YES"})
    req = compiled.create_infer_request()
    req.infer(feeds)
    req.infer(feeds)
    by_op: dict[str, float] = {}
    for info in req.profiling_info:
        key = f"{info.node_type} ({info.exec_type})"
        by_op[key] = by_op.get(key, 0.0) + info.real_time.total_seconds() * 1e3
    return _top(by_op, top)


def _top(by_op: dict[str, float], top: int) -> dict[str, Any]:
    total = sum(by_op.values()) or 1.0
    rows = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    return {"total_ms": round(total, 1), "ops": [{"op": k, "ms": round(v, 1), "share": round(v / total, 3)} for k, v in rows]}


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=("unet", "wan"), default="unet",
                   help="unet: ModelScope T2V's UNet3D (default); wan: Wan2.1-T2V-1.3B's DiT (benchmarks/_real_shape_wan.py)")
    p.add_argument("--shape", default=None, help="unet: modelscope (default) or tiny; wan: wan2.1-t2v-1.3b (default) or tiny")
    p.add_argument("--frames", type=int, default=None, help="unet: 8; wan: 17 (1 + 4k)")
    p.add_argument("--size", type=int, default=None, help="pixel height = width (unet: 128; wan: 256)")
    p.add_argument("--channel-ratio", type=float, default=0.25, help="unet: channel plan ratio; wan: head / FFN plan ratio")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--int8-model-type", default=None, choices=("default", "transformer"), help="NNCF preset (unet: default; wan: transformer)")
    p.add_argument("--skip", default="", help="comma-separated groups to skip: pytorch,ort,openvino,int8,profile")
    p.add_argument("--work", default=str(ROOT / "build" / "real_shape"))
    p.add_argument("--out", default=None, help="default benchmarks/results/real_shape_<cpu>.json (tiny: under --work)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prepare-only", action="store_true", help="build the artifacts under --work (model, bundle, pruned and int8 graphs) and stop")
    p.add_argument("--remove-blocks", type=int, default=None, help="wan: transformer blocks the VDMini block plan removes (10 of 30; tiny: 2 of 6)")
    p.add_argument("--text-layers", type=int, default=2, help="wan: UMT5 layers built (24 in Wan2.1; times scaled to 24, see the JSON)")
    p.add_argument("--int8-calibration", type=int, default=16, help="wan: transformer calls NNCF calibrates int8 on")
    p.add_argument("--int8-blocks", type=int, default=None, help="wan: int8 / fp32 measured on the first N blocks (12 of 30; 0: all)")
    p.add_argument("--recompose", metavar="JSON", default=None,
                   help="wan: re-derive the ratios and goals of a written JSON from its medians (no measurement), in place")
    args = p.parse_args(argv)
    if args.family == "wan":
        from _real_shape_wan import main_wan, recompose

        return recompose(Path(args.recompose)) if args.recompose else main_wan(args, argv)
    if args.recompose:
        p.error("--recompose re-derives a --family wan JSON")
    if args.shape is None:
        args.shape = "modelscope"
    if args.shape not in SHAPES:
        p.error(f"--shape {args.shape!r}: the unet family has {sorted(SHAPES)} (wan2.1-t2v-1.3b is --family wan)")
    args.frames = 8 if args.frames is None else args.frames
    args.size = 128 if args.size is None else args.size
    args.int8_model_type = args.int8_model_type or "default"
    skip = {s for s in args.skip.split(",") if s}
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    work = Path(args.work) / args.shape
    work.mkdir(parents=True, exist_ok=True)
    mach = machine(args.threads)
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" / f"real_shape_{cpu_slug(mach)}.json" if args.shape == "modelscope"
                                            else work / "real_shape.json")
    record: dict[str, Any] = {
        "schema": SCHEMA, "command": "python benchmarks/bench_real_shape.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": mach, "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "goals": GOALS,
        "shape": {"name": args.shape, "frames": args.frames, "pixels": [args.size, args.size], "latent": [args.size // 8, args.size // 8],
                  "text_len": 77, "unet": SHAPES[args.shape]["unet"], "vae": SHAPES[args.shape]["vae"], "text_encoder": SHAPES[args.shape]["text"]},
        "stages": {}, "rows": [], "note": "random weights; per-call medians measured interleaved; per-video figures composed from stage medians",
    }
    latent = args.size // 8
    teacher = build_teacher(work, args.shape, args.seed)
    bundle = export_bundle(work, teacher, args.frames, args.size, args.threads, record)
    cfg = json.loads((teacher / "unet" / "config.json").read_text())
    plan, channel_plan = plans(cfg, work, args.channel_ratio, record)
    graphs = export_pruned(teacher, bundle, work, args.frames, args.size, plan, channel_plan, record)
    calib = [unet_feeds(cfg, args.frames, latent, 1, args.seed + i, timestep=t) for i, t in enumerate((999.0, 759.0, 499.0, 259.0))]
    int8 = None if "int8" in skip else quantize(graphs["unpruned"], work, calib, args.int8_model_type, record)
    tiny = tiny_decoder_graph(teacher, work, args.frames, args.size, TINY_WIDTH, args.seed, record)
    if args.prepare_only:
        log(f"prepared {work}: {json.dumps(record['stages'])}")
        return 0
    f1 = unet_feeds(cfg, args.frames, latent, 1, args.seed)
    f1c = unet_feeds(cfg, args.frames, latent, 1, args.seed, cond=True)
    f2 = unet_feeds(cfg, args.frames, latent, 2, args.seed)
    medians: dict[str, dict[str, dict[str, float]]] = {}

    # PyTorch eager: the three UNets (~11 GB at the ModelScope shape) loaded together, every call interleaved.
    tv = {"unpruned": student_unet(teacher), **pruned_unets(plan, channel_plan)}
    record["variants"] = {name: {"parameters": sum(p.numel() for p in m.parameters())} for name, m in tv.items()}
    record["variants"]["vdmini"]["removed"] = plan["removed"]
    record["variants"]["vdmini_ch"]["channel_ratio"] = args.channel_ratio
    record["flops"] = count_all_flops(tv, f1, f1c, f2, graphs)
    if "pytorch" not in skip:
        rows = run_group("pytorch", {
            "teacher_cfg_b2": torch_call(tv["unpruned"], f2), "student_b1": torch_call(tv["unpruned"], f1c),
            "unpruned_b1": torch_call(tv["unpruned"], f1), "vdmini_b1": torch_call(tv["vdmini"], f1c),
            "vdmini_ch_b1": torch_call(tv["vdmini_ch"], f1c),
        }, args.warmup, args.runs, record)
        medians["pytorch"] = {"all": {k: r["median_ms"] for k, r in rows.items()}}
    tv = None
    gc.collect()
    if "pytorch" not in skip:
        medians["pytorch"]["stages"] = stage_times_torch(teacher, args.frames, latent, args.warmup, args.runs, record)

    for kind in ("ort", "openvino"):
        if kind not in skip:
            medians[kind] = backend_groups(kind, graphs, int8, bundle, f1, f1c, f2, args, record, decoders={"tiny": tiny})

    record["medians_ms"] = medians
    record["ratios"] = ratios(medians, record["flops"], record)
    if "profile" not in skip:
        record["profiles"] = profiles(record, graphs, int8, f1, args.threads)
    record["peak_rss_gib"] = round(max(peak_rss_gib(), peak_rss_gib(resource.RUSAGE_CHILDREN)), 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    log(f"wrote {out}")
    print(json.dumps(record["ratios"], indent=1))
    return 0


def backend_groups(kind: str, graphs: dict[str, Path], int8: Path | None, bundle: Path, f1: dict[str, Any], f1c: dict[str, Any],
                   f2: dict[str, Any], args: argparse.Namespace, record: dict[str, Any],
                   decoders: dict[str, tuple[Path, dict[str, tuple[int, ...]]]] | None = None) -> dict[str, dict[str, float]]:
    """One backend's groups, each the unpruned fp32 graph interleaved with one other (teacher CFG batch, a pruned
    graph, bf16, int8): two multi-GB models in memory at a time, and every ratio taken within its own group."""
    ref = load_backend(kind, graphs["unpruned"], args.threads)
    ref_b1 = backend_call(ref, f1, out_shape(f1))
    out: dict[str, dict[str, float]] = {}

    def group(name: str, other: str, call: Any) -> None:
        rows = run_group(f"{kind}_{name}", {"unpruned_b1": ref_b1, other: call}, args.warmup, args.runs, record)
        out[name] = {k: r["median_ms"] for k, r in rows.items()}

    group("cfg", "teacher_cfg_b2", backend_call(ref, f2, out_shape(f2)))
    others: list[tuple[str, Path, str]] = [("vdmini", graphs["vdmini"], "f32"), ("vdmini_ch", graphs["vdmini_ch"], "f32")]
    if kind == "openvino":
        others.append(("bf16", graphs["unpruned"], "bf16"))
        if int8 is not None:
            others.append(("int8", int8, "f32"))
    for name, path, hint in others:
        other = load_backend(kind, path, args.threads, precision_hint=hint)
        feeds = f1c if "timestep_cond" in other.input_dtypes() else f1
        group(name, f"{name}_b1", backend_call(other, feeds, out_shape(f1)))
        other.close()
        del other
        gc.collect()
    ref.close()
    ref = ref_b1 = None
    gc.collect()
    out["stages"] = stage_times_bundle(kind, bundle, args.threads, args.warmup, args.runs, record, decoders=decoders)
    return out


def count_all_flops(tv: dict[str, Any], f1: dict[str, Any], f1c: dict[str, Any], f2: dict[str, Any], graphs: dict[str, Path],
                    call: Any = None) -> dict[str, Any]:
    """FLOPs per denoiser call: PyTorch's FlopCounterMode on each module, the ONNX graph's count beside it. ``call``
    makes a module's call from feeds (default ``torch_call``, the UNet's; the Wan run passes its own)."""
    from turbo_edge.core.flops import count_flops
    from turbo_edge.runtime.flops import onnx_flops

    call = torch_call if call is None else call
    out: dict[str, Any] = {
        "unpruned_b1": count_flops(call(tv["unpruned"], f1)),
        "student_b1": count_flops(call(tv["unpruned"], f1c)),
        "teacher_cfg_b2": count_flops(call(tv["unpruned"], f2)),
        "vdmini_b1": count_flops(call(tv["vdmini"], f1c)),
        "vdmini_ch_b1": count_flops(call(tv["vdmini_ch"], f1c)),
    }
    # The unpruned graph is the teacher bundle's (no timestep_cond); the pruned ones are the student's.
    out["onnx"] = {f"{name}_b1": onnx_flops(path, {k: tuple(a.shape) for k, a in (f1 if name == "unpruned" else f1c).items()})
                   for name, path in graphs.items()}
    return out


def stage_times_torch(teacher: Path, frames: int, latent: int, warmup: int, runs: int, record: dict[str, Any]) -> dict[str, float]:
    """The text encoder (one prompt; CFG adds the empty prompt: batch 2) and the VAE decoder (all frames), eager."""
    import torch

    from turbo_edge.core.pipeline_io import load_teacher

    model = load_teacher(teacher)
    ids1 = torch.zeros((1, 77), dtype=torch.long)
    ids2 = torch.zeros((2, 77), dtype=torch.long)
    lat = torch.randn(frames, model.vae.config.latent_channels, latent, latent)

    def enc(ids: Any) -> Any:
        def call() -> Any:
            with torch.inference_mode():
                return model.text_encoder(ids)[0]
        return call

    def dec() -> Any:
        with torch.inference_mode():
            return model.vae.decode(lat).sample

    rows = run_group("pytorch_stages", {"text_b1": enc(ids1), "text_b2": enc(ids2), "decode": dec}, warmup, runs, record)
    model = None
    gc.collect()
    return {k: r["median_ms"] for k, r in rows.items()}


def stage_times_bundle(kind: str, bundle: Path, threads: int, warmup: int, runs: int, record: dict[str, Any],
                       fill: dict[str, int] | None = None, decoders: dict[str, tuple[Path, dict[str, tuple[int, ...]]]] | None = None) -> dict[str, float]:
    """The bundle's text encoder and VAE decoder graphs on ``kind``, at the manifest's opt shapes (integer inputs zeros,
    or ``fill``'s value by name: a DiT text encoder's attention mask of ones, a full-length prompt). ``decoders``: other
    decoder graphs by name, (path, output shapes by name), e.g. a tiny decoder, each timed as ``decode_NAME`` in the same
    group on the bundle decoder's own latents (its one input)."""
    import numpy as np

    from turbo_edge.spec.bundle import load_bundle

    b = load_bundle(bundle)
    calls = {}
    keep = []
    rng = np.random.default_rng(0)
    for comp, label in (("text_encoder", "text"), ("vae_decoder", "decode")):
        spec, opt = b.component(comp), b.profile(comp)["opt"]
        backend = load_backend(kind, b.model_path(comp, "fp32"), threads)
        keep.append(backend)
        dtypes = backend.input_dtypes()
        for batch in ((1, 2) if comp == "text_encoder" else (None,)):
            ins = {n: (batch, *s[1:]) if batch else tuple(s) for n, s in opt.items()}
            dims = {d: v for t in spec["inputs"] for d, v in zip(t["shape"], ins[t["name"]]) if isinstance(d, str)}
            outs = {t["name"]: tuple(dims[d] if isinstance(d, str) else d for d in t["shape"]) for t in spec["outputs"]}
            feeds = {n: np.full(s, (fill or {}).get(n, 0), dtype=dtypes[n]) if np.issubdtype(dtypes[n], np.integer)
                     else rng.standard_normal(s).astype(dtypes[n]) for n, s in ins.items()}
            calls[f"{label}_b{batch}" if batch else label] = backend_call(backend, feeds, outs)
            if comp == "vae_decoder":
                latents = next(iter(feeds.values()))
    if latents.ndim == 4:  # a per-frame decoder's [F, C, h, w]: a variant takes the clip, [1, C, F, h, w]
        latents = np.ascontiguousarray(latents.transpose(1, 0, 2, 3)[None])
    for name, (path, out_shapes) in (decoders or {}).items():
        backend = load_backend(kind, path, threads)
        keep.append(backend)
        calls[f"decode_{name}"] = backend_call(backend, {n: latents for n in backend.input_dtypes()}, out_shapes)
    rows = run_group(f"{kind}_stages", calls, warmup, runs, record)
    for backend in keep:
        backend.close()
    return {k: r["median_ms"] for k, r in rows.items()}


def student_video(video: dict[str, Any], teacher_ms: float, steps: int, text: float, call: float, decode: float, suffix: str = "",
                  shares: bool = True) -> None:
    """One student video composed from stage medians (text + steps x denoiser call + decode) into ``video``: its ms,
    its ratio to the teacher's video and (``shares``) each stage's share, under keys ending in ``suffix``."""
    sv = text + steps * call + decode
    video[f"student_{steps}_step{suffix}_ms"] = round(sv)
    if shares:
        video[f"student_{steps}_step{suffix}_share"] = {"text": round(text / sv, 4), "unet": round(steps * call / sv, 4), "decode": round(decode / sv, 4)}
    video[f"ratio_{steps}_step{suffix}"] = round(teacher_ms / sv, 2)


def ratios(medians: dict[str, dict[str, dict[str, float]]], flops: dict[str, Any], record: dict[str, Any],
           goals: dict[str, float] | None = None) -> dict[str, Any]:
    """Every ratio the issue asks for, each beside its goal, each from the medians of one interleaved group.

    PyTorch runs one group (every call interleaved); ONNX Runtime and OpenVINO run pairs against the unpruned
    fp32 graph. The ONNX student call is the teacher bundle's graph at batch 1: it lacks the w embedding, whose
    cost the PyTorch group measures (``student_b1`` against ``unpruned_b1``).
    """
    from turbo_edge.spec.host import cpu_peak_flops

    out: dict[str, Any] = {"loop": {}, "video": {}, "prune": {}, "precision": {}, "backend": {}, "peak": {}}
    flop_ratio = {n: flops["unpruned_b1"] / flops[f"{n}_b1"] for n in ("vdmini", "vdmini_ch")}
    fp32: dict[str, float] = {}
    for kind, groups in medians.items():
        cfg = groups.get("all") or groups.get("cfg")
        if not cfg:
            continue
        student = cfg.get("student_b1", cfg["unpruned_b1"])
        fp32[kind] = cfg["unpruned_b1"]
        teacher_loop = TEACHER_STEPS * cfg["teacher_cfg_b2"]
        out["loop"][kind] = {f"{n}_step": round(teacher_loop / (n * student), 2) for n in STUDENT_STEPS}
        out["loop"][kind]["cfg_b2_over_b1"] = round(cfg["teacher_cfg_b2"] / cfg["unpruned_b1"], 3)
        if "student_b1" in cfg:
            out["loop"][kind]["w_embedding_cost"] = round(cfg["student_b1"] / cfg["unpruned_b1"] - 1, 4)
        st = groups.get("stages") or {}
        text_t, text_s, dec = st.get("text_b2"), st.get("text_b1"), st.get("decode")
        if None not in (text_t, text_s, dec):
            teacher_video = text_t + teacher_loop + dec
            video: dict[str, Any] = {"teacher_ms": round(teacher_video),
                                     "teacher_share": {"text": round(text_t / teacher_video, 4), "unet": round(teacher_loop / teacher_video, 4),
                                                       "decode": round(dec / teacher_video, 4)}}
            for n in STUDENT_STEPS:
                student_video(video, teacher_video, n, text_s, student, dec)
                # With the text encoder and decoder as they are, no UNet speed-up takes the ratio past this.
                video[f"bound_{n}_step"] = round(teacher_video / (text_s + dec), 1)
            for name in sorted(k[len("decode_"):] for k in st if k.startswith("decode_")):
                small = st[f"decode_{name}"]  # the student with a drop-in decoder variant (the teacher keeps the full one)
                video[f"decoder_full_over_{name}"] = round(dec / small, 2)
                for n in STUDENT_STEPS:
                    student_video(video, teacher_video, n, text_s, student, small, f"_{name}")
            out["video"][kind] = video
        out["prune"][kind] = {}
        for n in ("vdmini", "vdmini_ch"):
            g = groups.get("all") or groups.get(n) or {}
            if f"{n}_b1" not in g:
                continue
            base = g.get("student_b1", g["unpruned_b1"])  # the pruned UNets carry the w embedding: compare like with like
            speedup = base / g[f"{n}_b1"]
            out["prune"][kind][n] = {"speedup": round(speedup, 3), "flop_ratio": round(flop_ratio[n], 3), "of_flop_ratio": round(speedup / flop_ratio[n], 3)}
    ov = medians.get("openvino", {})
    int8, video, st = ov.get("int8") or {}, out["video"].get("openvino") or {}, ov.get("stages") or {}
    if "int8_b1" in int8 and "decode_tiny" in st and "teacher_ms" in video:
        # The deployed student: the int8 UNet (its group's int8 / fp32 ratio applied to the fp32 call of the video
        # figures) with the tiny decoder.
        whole = ov["cfg"]["unpruned_b1"] * int8["int8_b1"] / int8["unpruned_b1"]
        for n in STUDENT_STEPS:
            student_video(video, video["teacher_ms"], n, st["text_b1"], whole, st["decode_tiny"], "_int8_tiny", shares=False)
    for prec in ("int8", "bf16"):
        g = ov.get(prec) or {}
        if f"{prec}_b1" in g:
            out["precision"][f"ov_{prec}_over_fp32"] = round(g["unpruned_b1"] / g[f"{prec}_b1"], 3)
    eager = fp32.get("pytorch")
    for kind in ("ort", "openvino"):
        if eager and kind in fp32:
            out["backend"][f"{kind}_over_eager"] = round(eager / fp32[kind], 3)
    peak = cpu_peak_flops("fp32", cores=record["threads"])
    if fp32 and peak:
        fastest = min(fp32, key=fp32.get)
        achieved = flops["unpruned_b1"] / (fp32[fastest] / 1e3)
        out["peak"] = {"backend": fastest, "achieved_gflops": round(achieved / 1e9, 1), "peak_gflops": round(peak["flops_per_s"] / 1e9, 1),
                       "fraction": round(achieved / peak["flops_per_s"], 3), "peak_basis": peak.get("basis"),
                       "by_backend": {k: round(flops["unpruned_b1"] / (t / 1e3) / peak["flops_per_s"], 3) for k, t in fp32.items()}}
    out["goals"] = goal_check(out, goals)
    return out


def goal_check(r: dict[str, Any], goals: dict[str, float] | None = None) -> dict[str, Any]:
    """Each goal: the figure it is judged on, and met or missed (``goals``: ``GOALS``, or a family's own; a figure
    without a goal there is reported, not judged)."""
    goals = GOALS if goals is None else goals
    rows: dict[str, Any] = {}

    def add(name: str, value: float | None, goal_key: str) -> None:
        if value is not None and goal_key in goals:
            rows[name] = {"value": value, "goal": goals[goal_key], "met": bool(value >= goals[goal_key])}

    for kind, loop in r["loop"].items():
        add(f"loop_4_step_{kind}", loop["4_step"], "loop_4_step")
        add(f"loop_1_step_{kind}", loop["1_step"], "loop_1_step")
    for kind, pr in r["prune"].items():
        for n, row in pr.items():
            add(f"prune_{n}_{kind}", row["of_flop_ratio"], "prune_vs_flops")
    for kind, video in r["video"].items():  # the decoder issue's per-video goals, where a tiny decoder was timed beside the full one
        for prec in ("", "int8_"):  # the fp32 student, and the int8 one where its whole-call time is known
            add(f"video_4_step_{prec}tiny_{kind}", video.get(f"ratio_4_step_{prec}tiny"), "video_4_step_tiny")
            add(f"video_1_step_{prec}tiny_{kind}", video.get(f"ratio_1_step_{prec}tiny"), "video_1_step_tiny")
        add(f"decoder_full_over_tiny_{kind}", video.get("decoder_full_over_tiny"), "decoder_full_over_tiny")
    add("ov_int8_over_fp32", r["precision"].get("ov_int8_over_fp32"), "ov_int8_vs_fp32")
    add("ort_over_eager", r["backend"].get("ort_over_eager"), "ort_vs_eager")
    add("achieved_over_peak", r["peak"].get("fraction"), "achieved_vs_peak")
    return rows


def profiles(record: dict[str, Any], graphs: dict[str, Path], int8: Path | None, f1: dict[str, Any], threads: int) -> dict[str, Any]:
    """Where the time goes, for each backend whose goal was missed (ORT's profiler, OpenVINO's PERF_COUNT)."""
    missed = {k for k, g in record["ratios"]["goals"].items() if not g["met"]}
    out: dict[str, Any] = {}
    if any(k.endswith("_ort") or k == "ort_over_eager" for k in missed):
        log("profile: ort unpruned")
        out["ort_unpruned_b1"] = ort_profile(graphs["unpruned"], f1, threads)
    if any(k.endswith("_openvino") for k in missed) or "achieved_over_peak" in missed:
        log("profile: openvino unpruned fp32")
        out["openvino_unpruned_b1"] = ov_profile(graphs["unpruned"], f1, threads)
    if "ov_int8_over_fp32" in missed and int8 is not None:
        log("profile: openvino int8")
        out["openvino_int8_b1"] = ov_profile(int8, f1, threads)
    return out


if __name__ == "__main__":
    sys.exit(main())
