"""``bench_real_shape.py --family wan``: what the toolchain buys at Wan2.1-T2V-1.3B's shape, random weights, on this CPU.

    python benchmarks/bench_real_shape.py --family wan                # Wan2.1-T2V-1.3B, 17 frames at 256x256 (see below)
    python benchmarks/bench_real_shape.py --family wan --shape tiny   # the same chain at a reduced width, in a minute or two

Latency does not depend on the weights' values, so the subject is Wan2.1-T2V-1.3B's architecture with random weights,
written by ``WanPipeline.save_pretrained`` (the pinned diffusers / transformers) exactly as a user's checkpoint is:

- transformer: ``WanTransformer3DModel`` with Wan2.1-T2V-1.3B's config (patch (1, 2, 2), 12 heads x 128 = 1536 wide,
  FFN 8960, 30 blocks, 16 latent channels, text_dim 4096, freq_dim 256, cross-attention norm, q / k RMS norm across
  heads, eps 1e-6, RoPE table 1024): 1.42 B parameters, 5.7 GB fp32;
- autoencoder: ``AutoencoderKLWan`` with Wan2.1's config (base_dim 96, z_dim 16, dim_mult [1, 2, 4, 4], 2 residual
  blocks, temporal downsampling [False, True, True]) and its ``latents_mean`` / ``latents_std`` (diffusers' defaults
  for the class are Wan2.1's values; the JSON records them);
- text encoder: UMT5-XXL's width (d_model 4096, d_ff 10240, 64 heads x 64, gated GELU, 32 relative-attention buckets up
  to distance 128, 512 tokens) with **2 of its 24 layers** and **the builtin world vocabulary instead of its 256,384
  pieces** (``--text-layers``). Why: 24 layers are 4.6 B parameters (18.5 GB fp32) and the embedding table 1.05 B
  (4.2 GB); beside the 5.7 GB transformer and the export's copies of it they do not fit this 24 GiB machine, and 4
  layers would push the export past 20 GiB. The 24 layers are identical (UMT5 gives every layer its own relative-position
  bias, of the same size), so a text-encoder call is timed at 2 layers and scaled by 24 / 2 (``text_encoder.scale`` in
  the JSON; the measured figures stay beside the scaled ones); what is not per layer (a 512-row gather, whose latency
  does not depend on the vocabulary's size, and the final norm) is under 1 % of one layer;
- scheduler: ``FlowMatchEulerDiscreteScheduler(shift=3)``, the flow Euler sampler the bundle's runtimes run (Wan's
  repository ships UniPC with the same shift; the scheduler does not enter latency).

The clip: 17 frames at 256x256 -> latents 5 x 32 x 32 -> 1,280 tokens per transformer call (2x2 patches) and 512
text tokens: 3.78 TFLOP a batch-1 call (the causal decoder: 9.6 TFLOP for the clip), compute-bound on two cores.

The chain is the toolchain's own: ``turbo-edge export`` writes the fp32 bundle (UMT5 with its mask, the transformer with
external data, the causal decoder unrolled over the clip's 5 latent frames); the student is the teacher with the
distiller's guidance embedding (``WanFamily.attach_guidance_embedding``, the distill config's default width); the
VDMini block plan is the prune stage's (blocks ranked by measured motion cost on the student, ``prune.dit``; ``spec.plan
.vdmini_plan``; ``WanFamily.apply_plan``) and the head / FFN plan too (``prune.dit_widths``, activation importance,
replayed by ``core.dit_replay``); the pruned graphs come from the export stage's own contract
(``export.dit.denoiser_component``); int8 is NNCF through ``export.quantize`` (OpenVINO IR, the large-model route, NNCF's
default preset; ``--int8-calibration`` transformer calls, 16 by default, the estimate printed first); the graphs run on
the runtime's own backends.

**int8 is measured on the first 12 of the 30 blocks** (``--int8-blocks``; the teacher with the rest removed by the
family's block surgery, exported through the same contract, quantized, and timed against its own fp32 graph). Why:
NNCF's OpenVINO statistics pass holds ~5.2x the graph's weights (measured: 3.4 GiB at 3 blocks, 11.5 GiB at 12), so the
whole 5.3 GiB transformer would need ~28 GiB. The blocks are identical and what is not per block (patch embedding, the
time and text embedders, the output projection) is under 1 % of a call, so the int8 / fp32 ratio is the whole call's;
the JSON gives it with the whole call's int8 time it implies (``ov_int8_whole_call_ms_estimate``). Plans are made on a small clip (2 x 8 x 8 latents, 2 student steps): a plan is a choice of units,
which the measured clip's size does not enter; the timed calls are at the full clip.

Memory (24 GiB machine, peak RSS goal under 20 GiB): at most two transformers are in one process at once, except the
PyTorch group (the student, the VDMini one and the head / FFN one together, ~12 GB); each ONNX Runtime / OpenVINO group
is the unpruned graph against one other, and the teacher's batch-2 CFG shape is compiled only in its own group (the
reference is reloaded for each group): an OpenVINO graph holds its weights once as read (the ONNX external data, mapped
from the file) and once more, repacked, per compiled shape, measured at 12 blocks; so its largest group, the unpruned
graph against the VDMini one, is ~18.3 GiB of which ~8.8 GiB are the two files' clean mapped pages. ``turbo-edge
export`` traces the transformer at batch 1 and merges its weight files without loading them (``export.onnx_export``),
which keeps the export's child process near 15 GiB. The JSON records the peak RSS and the peak anonymous memory
(sampled). Every artifact is cached under ``--work`` by its recipe, so a rerun reuses it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import inspect
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import bench_real_shape as brs

# Wan2.1-T2V-1.3B's transformer (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json; the Wan repository's
# wan/configs/wan_t2v_1_3B.py: dim 1536, ffn_dim 8960, freq_dim 256, 12 heads, 30 layers, qk_norm, cross_attn_norm, eps 1e-6).
WAN_TRANSFORMER: dict[str, Any] = {
    "patch_size": [1, 2, 2], "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
    "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960, "num_layers": 30, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
}
# Wan2.1's VAE (the 1.3B and 14B T2V checkpoints share it); latents_mean / latents_std come from the class's defaults.
WAN_VAE: dict[str, Any] = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                           "temperal_downsample": [False, True, True], "dropout": 0.0}
# google/umt5-xxl's encoder (Wan2.1's text encoder): what a full-size build would be.
UMT5_XXL: dict[str, Any] = {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
                            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6, "vocab_size": 256384}
TINY: dict[str, Any] = {  # the same architectures at a width that runs in seconds (the script's own test)
    "transformer": {**WAN_TRANSFORMER, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512, "num_layers": 6, "text_dim": 64,
                    "freq_dim": 64},
    "vae": {**WAN_VAE, "base_dim": 16, "num_res_blocks": 1},
    "text": {**UMT5_XXL, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_heads": 4, "relative_attention_num_buckets": 8,
             "relative_attention_max_distance": 16},
    "text_len": 64, "frames": 9, "size": 64, "remove_blocks": 2, "int8_blocks": None,
}
SHAPES: dict[str, dict[str, Any]] = {
    "wan2.1-t2v-1.3b": {"transformer": WAN_TRANSFORMER, "vae": WAN_VAE, "text": UMT5_XXL, "text_len": 512, "frames": 17, "size": 256,
                        "remove_blocks": 10, "int8_blocks": 12},
    "tiny": TINY,
}
FLOW_SHIFT = 3.0
IMPORTANCE_LATENT = (2, 8, 8)  # latent frames, height, width of the clip plans are measured on (2 frames: a motion cost)
IMPORTANCE_STEPS = 2
log = brs.log


def vae_config(shape: dict[str, Any]) -> dict[str, Any]:
    """The shape's VAE config with Wan2.1's latent statistics (``AutoencoderKLWan``'s defaults, read from the class)."""
    from diffusers import AutoencoderKLWan

    params = inspect.signature(AutoencoderKLWan.__init__).parameters
    return {**shape["vae"], "latents_mean": list(params["latents_mean"].default), "latents_std": list(params["latents_std"].default)}


def text_config(shape: dict[str, Any], layers: int) -> dict[str, Any]:
    """The UMT5 config built: the shape's width, ``layers`` of its layers (the vocabulary is the tokenizer's)."""
    if not 1 <= layers <= shape["text"]["num_layers"]:
        raise SystemExit(f"--text-layers {layers}: UMT5 here has 1..{shape['text']['num_layers']} layers")
    return {k: v for k, v in shape["text"].items() if k != "vocab_size"} | {"num_layers": layers}


def guidance_dim() -> int:
    """The student's guidance-embedding width: the distiller's default (``DistillConfig.w_embedding_dim``)."""
    from turbo_edge.spec.configs import DistillConfig

    return int(DistillConfig().w_embedding_dim)


def latent_geometry(shape: dict[str, Any], frames: int, size: int) -> tuple[int, int]:
    """(latent frames, latent side) of the clip: 1 + (frames - 1) / 4 and size / 8 (Wan's causal VAE)."""
    t = 2 ** sum(shape["vae"]["temperal_downsample"])
    s = 2 ** (len(shape["vae"]["dim_mult"]) - 1)
    if (frames - 1) % t or size % (s * shape["transformer"]["patch_size"][1]):
        raise SystemExit(f"--frames {frames} / --size {size}: Wan takes 1 + {t}k frames and a side divisible by {s * 2}")
    return 1 + (frames - 1) // t, size // s


def transformer_flops(cfg: dict[str, Any], tokens: int, text_len: int, batch: int = 1) -> float:
    """Dense FLOPs of one transformer call (2 per multiply-add): projections, attention, FFN, the text embedder."""
    dim, ffn, layers = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"], cfg["num_layers"]
    per_block = (4 * dim * dim * tokens + 2 * tokens * tokens * dim  # self-attention: q k v o, scores and mix
                 + 2 * dim * dim * tokens + 2 * dim * dim * text_len + 2 * tokens * text_len * dim  # cross-attention
                 + 2 * dim * ffn * tokens)  # feed-forward
    return 2.0 * batch * (layers * per_block + text_len * (cfg["text_dim"] * dim + dim * dim))


# ------------------------------------------------------------------ 1. the model directory (WanPipeline.save_pretrained)


def build_teacher(work: Path, name: str, shape: dict[str, Any], text_layers: int, seed: int) -> Path:
    """A diffusers ``WanPipeline`` directory of the shape, random weights, written by ``save_pretrained``; reused when
    ``work/teacher`` has that recipe."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    from turbo_edge.core.wan import unigram_vocab
    from turbo_edge.core.world import vocabulary

    out = work / "teacher"
    text = text_config(shape, text_layers)
    recipe = {"what": "wan_teacher", "shape": name, "seed": seed, "transformer": shape["transformer"], "vae": vae_config(shape),
              "text": text, "text_len": shape["text_len"], "flow_shift": FLOW_SHIFT}
    if brs.cached(out, recipe):
        log(f"teacher: reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(seed)
    start = time.perf_counter()
    # A T5-style Unigram tokenizer over the world's words (tokenizer.json), at Wan's 512 tokens: latency depends on the
    # sequence length, not on which pieces the vocabulary has.
    tokenizer = T5Tokenizer(vocab=unigram_vocab(vocabulary()), extra_ids=0, model_max_length=shape["text_len"])
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), is_encoder_decoder=False, dropout_rate=0.0, pad_token_id=0,
                                          eos_token_id=1, **text))
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=encoder, transformer=WanTransformer3DModel(**shape["transformer"]),
                       vae=AutoencoderKLWan(**vae_config(shape)), scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT))
    pipe.save_pretrained(out, safe_serialization=True)
    del pipe, encoder
    gc.collect()
    brs.stamp(out, recipe)
    log(f"teacher: wrote {out} in {time.perf_counter() - start:.0f} s")
    return out


# ------------------------------------------------------------------ 2. the student and its plans (the prune stage's code)


def student(teacher: Path) -> Any:
    """The student's transformer: the teacher's, loaded by the family's loader, with the distiller's guidance embedding."""
    import torch

    from turbo_edge.core.denoiser import WanFamily

    family = WanFamily()
    return family.attach_guidance_embedding(family.load(teacher / "transformer", torch.float32), guidance_dim()).eval()


def sampler_and_inputs(teacher: Path, shape: dict[str, Any], seed: int) -> tuple[Any, Any, Any, Any]:
    """The student's sampler contract (as the distiller writes it for this scheduler), its schedule, and the small clip
    plans are measured on: random clean latents and text (the importance table's inputs)."""
    import torch

    from turbo_edge.spec.sampler import SamplerSpec

    scheduler_config = json.loads((teacher / "scheduler" / "scheduler_config.json").read_text())
    sampler = SamplerSpec.consistency(scheduler_config, 50, guidance_dim(), parameterisation="flow")
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, shape["transformer"]["in_channels"], *IMPORTANCE_LATENT, generator=g)
    cond = torch.randn(1, shape["text_len"], shape["transformer"]["text_dim"], generator=g)
    return sampler, sampler.schedule(scheduler_config), latents, cond


def make_plans(teacher: Path, work: Path, shape: dict[str, Any], remove: int, ratio: float, seed: int,
               record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The VDMini block plan (the ``remove`` blocks of lowest measured motion cost) and the head / FFN plan over it
    (``ratio`` of every kept block's heads and FFN channels, activation importance), made on the student as
    ``turbo-edge prune`` makes them; cached under ``work`` by recipe."""
    from turbo_edge.core import dit_replay
    from turbo_edge.core.denoiser import WanFamily
    from turbo_edge.prune import dit, dit_widths
    from turbo_edge.spec import plan as plans

    paths = {"block": work / plans.PLAN_FILE, "width": work / plans.CHANNEL_PLAN_FILE, "table": work / "importance.json"}
    recipe = {"what": "wan_plans", "teacher": json.loads((teacher.parent / "teacher.recipe.json").read_text()), "remove": remove,
              "ratio": ratio, "seed": seed, "clip": IMPORTANCE_LATENT, "steps": IMPORTANCE_STEPS, "importance": "activation"}
    if all(brs.cached(p, recipe) for p in paths.values()):
        return plans.read_plan(paths["block"]), plans.read_plan(paths["width"])
    start = time.perf_counter()
    model = student(teacher)
    sampler, sched, latents, cond = sampler_and_inputs(teacher, shape, seed)
    log(f"plans: importance of {len(model.blocks)} blocks ({len(model.blocks) + 1} x {IMPORTANCE_STEPS} student calls on "
        f"{'x'.join(map(str, IMPORTANCE_LATENT))} latents)")
    table = dit.measure_student_importance(model, sampler, sched, latents, cond, float(sampler.guidance), seed, IMPORTANCE_STEPS)
    config = dit_replay.base_config(model)
    block_plan = plans.vdmini_plan(config, table, remove)
    WanFamily().apply_plan(model, block_plan)  # in place: the unpruned student is not needed again here
    gc.collect()
    log(f"plans: VDMini removes {block_plan['removed']}; head / FFN plan at ratio {ratio} on the {len(model.blocks)} kept blocks")
    calls = dit.student_calls(sampler, sched, latents, cond, float(sampler.guidance), seed, IMPORTANCE_STEPS)
    width_plan = dit_widths.make_head_ffn_plan(model, ratio, calls, "activation", block_plan=block_plan, seed=seed)
    record["stages"]["plans_s"] = round(time.perf_counter() - start, 1)
    del model
    gc.collect()
    paths["table"].write_text(json.dumps(table, indent=1) + "\n")
    plans.write_plan(block_plan, paths["block"])
    plans.write_plan(width_plan, paths["width"])
    for p in paths.values():
        brs.stamp(p, recipe)
    return block_plan, width_plan


def variants(teacher: Path, block_plan: dict[str, Any], width_plan: dict[str, Any]) -> dict[str, Any]:
    """The three transformers timed in PyTorch: the student (teacher calls without its guidance input), the VDMini one
    and the VDMini + head / FFN one, each pruned by the family's own replay."""
    from turbo_edge.core.denoiser import WanFamily

    family = WanFamily()
    out = {"unpruned": student(teacher)}
    out["vdmini"] = family.apply_plan(copy.deepcopy(out["unpruned"]), block_plan)
    gc.collect()
    out["vdmini_ch"] = family.apply_channel_plan(copy.deepcopy(out["vdmini"]), width_plan, block_plan)
    gc.collect()
    return out


def export_pruned(teacher: Path, bundle: Path, work: Path, frames: int, size: int, block_plan: dict[str, Any], width_plan: dict[str, Any],
                  record: dict[str, Any]) -> dict[str, Path]:
    """The pruned transformers' ONNX graphs through the export stage's own contract (``export.dit.denoiser_component``);
    the unpruned one is the bundle's. One transformer in memory: the VDMini graph, then the head / FFN plan replayed on
    that same module for the second graph."""
    from turbo_edge.core.denoiser import WanFamily
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.export import dit
    from turbo_edge.export.contracts import ExportShapes
    from turbo_edge.export.onnx_export import export_onnx
    from turbo_edge.spec.plan import channel_plan_id

    graphs = {"unpruned": bundle / "unet.onnx"}
    shapes = ExportShapes(frames=frames, height=size, width=size, max_batch=1, min_frames=frames, max_frames=frames)
    bundle_files = brs.recipe_hash(json.loads((bundle / "manifest.json").read_text())["files"])
    todo = []
    for name in ("vdmini", "vdmini_ch"):
        path = work / f"transformer_{name}.onnx"
        recipe = {"what": name, "bundle": bundle_files, "plan": block_plan["removed"],
                  "width_plan": channel_plan_id(width_plan) if name == "vdmini_ch" else None}
        graphs[name] = path
        if not brs.cached(path, recipe):
            todo.append((name, path, recipe))
    if not todo:
        return graphs
    model = load_teacher(teacher)  # the contract needs the VAE geometry and the tokenizer's length, not these weights
    model = dataclasses.replace(model, denoiser=None, text_encoder=None)
    gc.collect()
    family = WanFamily()
    transformer = family.apply_plan(student(teacher), block_plan)
    gc.collect()
    for name, path, recipe in todo:
        if name == "vdmini_ch":
            family.apply_channel_plan(transformer, width_plan, block_plan)
        contract, module = dit.denoiser_component(dataclasses.replace(model, denoiser=transformer), shapes)
        start = time.perf_counter()
        log(f"export: {path.name}")
        export_onnx(module, contract, path)
        record["stages"][f"export_{name}_s"] = round(time.perf_counter() - start, 1)
        brs.stamp(path, recipe)
        del contract, module
        gc.collect()
    return graphs


def int8_graphs(teacher: Path, bundle: Path, work: Path, frames: int, size: int, blocks: int | None, calib: list[dict[str, Any]],
                model_type: str, record: dict[str, Any]) -> tuple[Path, Path]:
    """(fp32 graph, its NNCF int8 OpenVINO IR) for the int8 / fp32 ratio: the bundle's transformer, or, with ``blocks``,
    the teacher's first ``blocks`` blocks at the real width and clip (the rest removed by the family's block surgery and
    exported through the export stage's contract). NNCF's OpenVINO statistics pass holds ~5.2x the graph's weights
    (measured at 3 and 12 of the 30 blocks: 3.4 and 11.5 GiB), ~28 GiB for the whole 5.3 GiB transformer; the blocks
    are identical and what is not per block is under 1 % of a call, so the ratio is the whole transformer's."""
    import torch

    from turbo_edge.core.denoiser import WanFamily
    from turbo_edge.export.quantize import Int8Options, quantize_int8_openvino
    from turbo_edge.spec.configs.deploy import ExportConfig
    from turbo_edge.spec.host import host_overflow_fix

    layers = int(json.loads((teacher / "transformer" / "config.json").read_text())["num_layers"])
    fp32 = bundle / "unet.onnx"
    if blocks is not None and blocks < layers:
        fp32 = work / f"transformer_first{blocks}.onnx"
        recipe = {"what": "depth", "bundle": brs.recipe_hash(json.loads((bundle / "manifest.json").read_text())["files"]), "blocks": blocks}
        if not brs.cached(fp32, recipe):
            from turbo_edge.core.pipeline_io import load_teacher
            from turbo_edge.export import dit
            from turbo_edge.export.contracts import ExportShapes
            from turbo_edge.export.onnx_export import export_onnx

            model = load_teacher(teacher)
            model = dataclasses.replace(model, denoiser=None, text_encoder=None)
            gc.collect()
            family = WanFamily()
            transformer = family.apply_plan(family.load(teacher / "transformer", torch.float32),
                                            {"removed": [f"blocks.{i}" for i in range(blocks, layers)]})
            shapes = ExportShapes(frames=frames, height=size, width=size, max_batch=1, min_frames=frames, max_frames=frames)
            contract, module = dit.denoiser_component(dataclasses.replace(model, denoiser=transformer), shapes)
            log(f"export: {fp32.name} (the teacher's first {blocks} of {layers} blocks, for int8)")
            export_onnx(module, contract, fp32)
            brs.stamp(fp32, recipe)
            del model, transformer, contract, module
            gc.collect()
    out = work / f"{fp32.stem}.int8_{model_type}.xml"
    recipe = {"what": "int8_ov", "src": fp32.name, "size": sum(f.stat().st_size for f in fp32.parent.glob(fp32.name + "*")), "model_type": model_type,
              "feeds": len(calib)}
    if not brs.cached(out, recipe):
        start = time.perf_counter()
        options = Int8Options(model_type=model_type, ignored_patterns=ExportConfig().int8_ignored_patterns, subset_size=len(calib),
                              bias_correction=False, overflow_fix=host_overflow_fix())
        quantize_int8_openvino(fp32, out, calib, options)
        record["stages"][f"int8_{model_type}_s"] = round(time.perf_counter() - start, 1)
        record["stages"][f"int8_{model_type}_peak_rss_gib"] = round(brs.peak_rss_gib(), 2)
        brs.stamp(out, recipe)
    return fp32, out


# ------------------------------------------------------------------ inputs and calls


def feeds(shape: dict[str, Any], latent_f: int, latent_hw: int, batch: int, seed: int, timestep: float = 500.0,
          guidance: bool = False) -> dict[str, Any]:
    """One transformer call's inputs as the graphs take them (the flow timestep is sigma x 1000)."""
    import numpy as np

    cfg = shape["transformer"]
    rng = np.random.default_rng(seed)
    out = {"sample": rng.standard_normal((batch, cfg["in_channels"], latent_f, latent_hw, latent_hw), dtype=np.float32),
           "timestep": np.full((batch,), timestep, dtype=np.float32),
           "encoder_hidden_states": rng.standard_normal((batch, shape["text_len"], cfg["text_dim"]), dtype=np.float32)}
    if guidance:
        out["timestep_cond"] = rng.standard_normal((batch, guidance_dim()), dtype=np.float32)
    return out


def torch_call(module: Any, f: dict[str, Any]) -> Any:
    """One transformer call through the family's common signature (``core.denoiser.call_denoiser``)."""
    import torch

    from turbo_edge.core.denoiser import call_denoiser

    args = {k: torch.from_numpy(v) for k, v in f.items()}

    def call() -> Any:
        with torch.inference_mode():
            return call_denoiser(module, args["sample"], args["timestep"], args["encoder_hidden_states"], args.get("timestep_cond"))

    return call


def calibration(shape: dict[str, Any], latent_f: int, latent_hw: int, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` batch-1 transformer inputs along a 50-step flow trajectory's timesteps (1000 sigma, high to low)."""
    import numpy as np

    sigmas = np.linspace(0.999, 0.02, n)
    return [feeds(shape, latent_f, latent_hw, 1, seed + i, timestep=float(1000 * s)) for i, s in enumerate(sigmas)]


# ------------------------------------------------------------------ timing


def stage_times_torch(teacher: Path, frames: int, size: int, shape: dict[str, Any], warmup: int, runs: int,
                      record: dict[str, Any]) -> dict[str, float]:
    """The text encoder (one prompt; CFG adds the empty prompt: batch 2) and the causal decoder (the whole clip), eager,
    each as its exported graph computes it (UMT5 with the mask applied; the decoder with its normalisation and clamp)."""
    import torch

    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.text_encoders import masked_hidden_states
    from turbo_edge.export import dit
    from turbo_edge.export.contracts import ExportShapes

    model = load_teacher(teacher)
    shapes = ExportShapes(frames=frames, height=size, width=size, max_batch=1, min_frames=frames, max_frames=frames)
    contract, decoder = dit.vae_decoder_component(model, shapes)  # the clip's geometry reads the transformer's config
    model = dataclasses.replace(model, denoiser=None)
    gc.collect()
    n = shape["text_len"]
    ids = {b: torch.zeros((b, n), dtype=torch.long) for b in (1, 2)}
    mask = {b: torch.ones((b, n), dtype=torch.long) for b in (1, 2)}
    latent = torch.randn(*contract.sample_inputs("opt")["latent"].shape)

    def enc(b: int) -> Any:
        def call() -> Any:
            with torch.inference_mode():
                return masked_hidden_states(model.text_encoder, ids[b], mask[b])
        return call

    def dec() -> Any:
        with torch.inference_mode():
            return decoder(latent)

    rows = brs.run_group("pytorch_stages", {"text_b1": enc(1), "text_b2": enc(2), "decode": dec}, warmup, runs, record)
    model = decoder = None  # the closures above are done with them
    gc.collect()
    return {k: r["median_ms"] for k, r in rows.items()}


def backend_groups(kind: str, graphs: dict[str, Path], int8: tuple[Path, Path] | None, bundle: Path, f1: dict[str, Any], f1c: dict[str, Any],
                   f2: dict[str, Any], args: argparse.Namespace, record: dict[str, Any],
                   decoders: dict[str, tuple[Path, dict[str, tuple[int, ...]]]] | None = None) -> dict[str, dict[str, float]]:
    """One backend's groups, each a reference fp32 graph interleaved with one other (the teacher's CFG batch, a pruned
    graph; int8 against its own fp32 graph: ``int8_graphs``), every ratio within its own group. The reference is loaded
    afresh for each group so it holds one compiled shape beside the other graph (OpenVINO keeps a compiled copy of the
    weights per shape). An int8 measured on the first blocks is recorded as ``depth_b1`` / ``int8_depth_b1``."""
    out: dict[str, dict[str, float]] = {}
    groups: list[tuple[str, Path, Path | None]] = [("cfg", graphs["unpruned"], None), ("vdmini", graphs["unpruned"], graphs["vdmini"]),
                                                   ("vdmini_ch", graphs["unpruned"], graphs["vdmini_ch"])]
    if kind == "openvino" and int8 is not None:
        groups.append(("int8", *int8))
    for name, ref_path, path in groups:
        depth = name == "int8" and ref_path != graphs["unpruned"]
        ref = brs.load_backend(kind, ref_path, args.threads)
        calls = {"depth_b1" if depth else "unpruned_b1": brs.backend_call(ref, f1, brs.out_shape(f1))}
        if path is None:
            calls["teacher_cfg_b2"] = brs.backend_call(ref, f2, brs.out_shape(f2))
        other = None
        if path is not None:
            other = brs.load_backend(kind, path, args.threads)
            fo = f1c if "timestep_cond" in other.input_dtypes() else f1
            calls["int8_depth_b1" if depth else f"{name}_b1"] = brs.backend_call(other, fo, brs.out_shape(f1))
        rows = brs.run_group(f"{kind}_{name}", calls, args.warmup, args.runs, record)
        out[name] = {k: r["median_ms"] for k, r in rows.items()}
        for backend in (other, ref):
            if backend is not None:
                backend.close()
        del calls, other, ref
        gc.collect()
    out["stages"] = brs.stage_times_bundle(kind, bundle, args.threads, args.warmup, args.runs, record, fill={"attention_mask": 1},
                                           decoders=decoders)
    return out


def scale_text(medians: dict[str, dict[str, dict[str, float]]], scale: float) -> None:
    """Per-video figures take the text encoder at Wan2.1's 24 layers: each ``text_b*`` stage median scaled, the measured
    one kept as ``text_b*_measured``."""
    for groups in medians.values():
        st = groups.get("stages") or {}
        for key in [k for k in st if k.startswith("text_b") and not k.endswith("_measured")]:
            st[f"{key}_measured"] = st[key]
            st[key] = round(st[key] * scale, 2)


# ------------------------------------------------------------------ main


def compose(record: dict[str, Any], goal: dict[str, float]) -> dict[str, Any]:
    """The ratios and goal verdicts from the record's medians (text times already scaled): ``brs.ratios``, then int8
    measured on the first blocks (the ratio is its own group's; the whole call's time follows from it), and the
    deployed student on OpenVINO: the int8 transformer (that estimate) with the tiny decoder, beside the fp32 figures."""
    medians = record["medians_ms"]
    r = brs.ratios(medians, record["flops"], record, goals=goal)
    depth = (medians.get("openvino") or {}).get("int8") or {}
    if "int8_depth_b1" in depth:
        ratio = depth["depth_b1"] / depth["int8_depth_b1"]
        whole = medians["openvino"]["cfg"]["unpruned_b1"] / ratio
        r["precision"].update({"ov_int8_over_fp32": round(ratio, 3), "int8_blocks": record["int8"]["blocks"],
                               "ov_int8_whole_call_ms_estimate": round(whole, 1)})
        video, st = r["video"].get("openvino") or {}, medians["openvino"].get("stages") or {}
        if "teacher_ms" in video and "decode_tiny" in st:
            for n in brs.STUDENT_STEPS:
                brs.student_video(video, video["teacher_ms"], n, st["text_b1"], whole, st["decode_tiny"], "_int8_tiny", shares=False)
        r["goals"] = brs.goal_check(r, goal)
    return r


def recompose(path: Path) -> int:
    """``--recompose``: a written JSON's ratios and goals re-derived from its medians, in place (no measurement)."""
    record = json.loads(path.read_text())
    if record.get("family") != "wan":
        raise SystemExit(f"--recompose {path}: not a --family wan record")
    record["goals"] = goals(record["machine"])
    record["ratios"] = compose(record, record["goals"])
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    log(f"recomposed {path}")
    print(json.dumps(record["ratios"]["goals"], indent=1))
    return 0


def goals(mach: dict[str, Any]) -> dict[str, float]:
    """The issue's goals for the DiT: 4-step loop >= 22x, block plan >= 0.9 of its FLOP ratio, int8 >= 2x on a CPU with
    int8 dot products (VNNI / AMX) and >= 1.5x on one without (AVX2 only), fp32 at >= 0.5 of the CPU's peak; and the
    decoder issue's: a decoder call full / tiny >= 5x, per video 50-step CFG teacher with the full decoder / student with
    the tiny one >= 22x at 4 steps and >= 60x at 1 step."""
    return {"loop_4_step": 22.0, "prune_vs_flops": 0.9, "ov_int8_vs_fp32": 2.0 if mach.get("int8_dot_product") else 1.5,
            "achieved_vs_peak": 0.5, "decoder_full_over_tiny": 5.0, "video_4_step_tiny": 22.0, "video_1_step_tiny": 60.0}


class AnonPeak:
    """This process's peak anonymous memory (``RssAnon``, sampled every 0.2 s): the part of its RSS that is not a file's
    mapped pages (the ONNX external data OpenVINO maps), which the kernel cannot drop under pressure."""

    def __init__(self) -> None:
        import threading

        self.gib = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.gib = max(self.gib, int(line.split()[1]) / 2**20)
            time.sleep(0.2)


def main_wan(args: argparse.Namespace, argv: list[str] | None) -> int:
    from turbo_edge.spec.logs import configure

    configure()  # the CLI's quiet defaults: no model-loading bars, third-party logs at WARNING
    anon = AnonPeak()
    import torch

    from turbo_edge.spec.plan import head_ffn_widths

    name = args.shape or "wan2.1-t2v-1.3b"
    if name not in SHAPES:
        raise SystemExit(f"--shape {name!r}: the wan family has {sorted(SHAPES)}")
    shape = SHAPES[name]
    frames = args.frames or shape["frames"]
    size = args.size or shape["size"]
    remove = shape["remove_blocks"] if args.remove_blocks is None else args.remove_blocks
    # NNCF's default preset: every MatMul and the patch embedding. The transformer preset quantizes the same matmuls and
    # adds SmoothQuant, which rescales weights (no latency effect) at the cost of a second statistics pass and a copy of them.
    model_type = args.int8_model_type or "default"
    latent_f, latent_hw = latent_geometry(shape, frames, size)
    skip = {s for s in args.skip.split(",") if s}
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    work = Path(args.work) / f"wan_{name}"
    work.mkdir(parents=True, exist_ok=True)
    mach = brs.machine(args.threads)
    out = Path(args.out) if args.out else (brs.ROOT / "benchmarks" / "results" / f"real_shape_wan_{brs.cpu_slug(mach)}.json" if name != "tiny"
                                            else work / "real_shape.json")
    cfg = shape["transformer"]
    p = cfg["patch_size"]
    tokens = (latent_f // p[0]) * (latent_hw // p[1]) * (latent_hw // p[2])
    text = text_config(shape, args.text_layers)
    text_scale = shape["text"]["num_layers"] / args.text_layers
    goal = goals(mach)
    record: dict[str, Any] = {
        "schema": brs.SCHEMA, "command": "python benchmarks/bench_real_shape.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "family": "wan", "machine": mach, "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "goals": goal,
        "shape": {"name": name, "frames": frames, "pixels": [size, size], "latent": [latent_f, latent_hw, latent_hw], "tokens": tokens,
                  "text_len": shape["text_len"], "transformer": cfg, "vae": vae_config(shape), "text_encoder": text},
        "text_encoder": {
            "built": {"num_layers": args.text_layers, "vocab": "the builtin world vocabulary (Unigram, tokenizer.json)"},
            "real": {"num_layers": shape["text"]["num_layers"], "vocab_size": shape["text"]["vocab_size"]},
            "scale": text_scale,
            "why": (f"UMT5-XXL's {shape['text']['num_layers']} layers (4.6 B parameters, 18.5 GB fp32) and its {shape['text']['vocab_size']}-piece "
                    "embedding (4.2 GB) do not fit a 24 GiB machine beside the 5.7 GB transformer and the export's copies of it; "
                    "the layers are identical, so a call is timed at the built depth and scaled by real / built layers; a gather's "
                    "latency does not depend on the vocabulary's size"),
        },
        "plans": {"remove_blocks": remove, "head_ffn_ratio": args.channel_ratio, "importance": "activation",
                  "measured_on": {"latent": list(IMPORTANCE_LATENT), "student_steps": IMPORTANCE_STEPS}},
        "stages": {}, "rows": [],
        "note": "random weights; per-call medians measured interleaved; per-video figures composed from stage medians, the text encoder "
                "scaled to its real depth",
    }
    est = transformer_flops(cfg, tokens, shape["text_len"])
    log(f"shape {name}: {frames} frames at {size}x{size} -> latents {latent_f}x{latent_hw}x{latent_hw}, {tokens} tokens, "
        f"~{est / 1e9:.0f} GFLOP per batch-1 transformer call")
    teacher = build_teacher(work, name, shape, args.text_layers, args.seed)
    bundle = brs.export_bundle(work, teacher, frames, size, args.threads, record)
    block_plan, width_plan = make_plans(teacher, work, shape, remove, args.channel_ratio, args.seed, record)
    graphs = export_pruned(teacher, bundle, work, frames, size, block_plan, width_plan, record)
    tiny = brs.tiny_decoder_graph(teacher, work, frames, size, brs.TINY_WIDTH, args.seed, record)
    int8 = None
    int8_blocks = shape["int8_blocks"] if args.int8_blocks is None else (args.int8_blocks or None)
    if int8_blocks is not None and int8_blocks >= cfg["num_layers"]:
        int8_blocks = None
    if "int8" not in skip:
        calib = calibration(shape, latent_f, latent_hw, args.int8_calibration, args.seed)
        depth = int8_blocks or cfg["num_layers"]
        per_call = transformer_flops({**cfg, "num_layers": depth}, tokens, shape["text_len"]) / (0.5 * (mach.get("peak_gflops") or 100.0) * 1e9)
        log(f"int8: NNCF calibration on {len(calib)} calls of the transformer's {'first ' if int8_blocks else ''}{depth} blocks (OpenVINO, "
            f"{model_type} preset): ~{per_call:.1f} s a call at half the CPU's fp32 peak, so ~{len(calib) * per_call / 60:.1f} min of "
            "statistics before quantization (none if cached)")
        int8 = int8_graphs(teacher, bundle, work, frames, size, int8_blocks, calib, model_type, record)
        del calib
    record["int8"] = {"preset": model_type, "calibration_calls": args.int8_calibration, "blocks": int8_blocks or cfg["num_layers"],
                      "why_blocks": None if int8_blocks is None else (
                          "NNCF's OpenVINO statistics pass holds ~5.2x the graph's weights (3.4 GiB at 3 blocks, 11.5 GiB at 12), ~28 GiB "
                          "for the whole transformer; the blocks are identical and the rest is under 1 % of a call, so int8 / fp32 is "
                          "measured on the first blocks, each against its own fp32 graph")}
    if args.prepare_only:
        log(f"prepared {work}: {json.dumps(record['stages'])}")
        return 0
    f1 = feeds(shape, latent_f, latent_hw, 1, args.seed)
    f1c = feeds(shape, latent_f, latent_hw, 1, args.seed, guidance=True)
    f2 = feeds(shape, latent_f, latent_hw, 2, args.seed)
    medians: dict[str, dict[str, dict[str, float]]] = {}

    # PyTorch eager: the three transformers loaded together (~12.4 GB at the real shape), every call interleaved.
    tv = variants(teacher, block_plan, width_plan)
    record["variants"] = {n: {"parameters": sum(q.numel() for q in m.parameters())} for n, m in tv.items()}
    record["variants"]["vdmini"]["removed"] = block_plan["removed"]
    widths = head_ffn_widths(width_plan)
    record["variants"]["vdmini_ch"].update({"ratio": width_plan["ratio"], "widths": [dict(w) for w in {tuple(sorted(w.items())) for w in widths}],
                                            "qk_norm_factor_range": width_plan["qk_norm"]["factor_range"]})
    record["flops"] = brs.count_all_flops(tv, f1, f1c, f2, graphs, call=torch_call)
    record["flops"]["estimate_b1"] = est
    if "pytorch" not in skip:
        rows = brs.run_group("pytorch", {
            "teacher_cfg_b2": torch_call(tv["unpruned"], f2), "student_b1": torch_call(tv["unpruned"], f1c),
            "unpruned_b1": torch_call(tv["unpruned"], f1), "vdmini_b1": torch_call(tv["vdmini"], f1c),
            "vdmini_ch_b1": torch_call(tv["vdmini_ch"], f1c),
        }, args.warmup, args.runs, record)
        medians["pytorch"] = {"all": {k: r["median_ms"] for k, r in rows.items()}}
    tv = None
    gc.collect()
    if "pytorch" not in skip:
        medians["pytorch"]["stages"] = stage_times_torch(teacher, frames, size, shape, args.warmup, args.runs, record)
    for kind in ("ort", "openvino"):
        if kind not in skip:
            medians[kind] = backend_groups(kind, graphs, int8, bundle, f1, f1c, f2, args, record, decoders={"tiny": tiny})
    scale_text(medians, text_scale)
    record["medians_ms"] = medians
    record["ratios"] = compose(record, goal)
    if "profile" not in skip:
        record["profiles"] = brs.profiles(record, graphs, int8[1] if int8 else None, f1, args.threads)
    record["peak_rss_gib"] = round(max(brs.peak_rss_gib(), brs.peak_rss_gib(resource.RUSAGE_CHILDREN)), 2)
    record["peak_rss_by"] = {"this_process_gib": round(brs.peak_rss_gib(), 2), "this_process_anonymous_gib": round(anon.gib, 2),
                             "largest_child_gib": round(brs.peak_rss_gib(resource.RUSAGE_CHILDREN), 2)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    log(f"wrote {out} (peak RSS {record['peak_rss_gib']} GiB: {record['peak_rss_by']})")
    print(json.dumps(record["ratios"], indent=1))
    return 0
