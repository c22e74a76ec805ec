"""The Wan2.1 paths of the GPU check (``gpu_check.py`` runs them; standalone, the library never imports this).

- ``pytorch-cuda-wan``: a transformer of Wan2.1-T2V-1.3B's architecture (``WAN_TRANSFORMER``: 1,418,996,800 parameters,
  random weights, built on the GPU, nothing downloaded) at Wan2.1-1.3B's own 480p clip: 81 frames of 480x832, latents
  16x21x60x104, 32,760 tokens a call, UMT5's 512 x 4096 text. One CFG call of the teacher (batch 2) and one call of
  the student (batch 1, with the distilled student's guidance embedding, ``core.denoiser.attach_wan_guidance_embedding``),
  bf16 then fp16, eager then replayed from a CUDA graph; CUDA-event latency, peak memory, max abs diff against one fp32
  eager student call (the teacher call's first row has the same inputs; the guidance embedding starts at zero, so the
  fp32 reference serves both). Weights are cast as diffusers' ``from_pretrained(torch_dtype=...)`` loads them: the
  modules in ``_keep_in_fp32_modules`` (RoPE tables, time embedder, adaLN tables, norms) stay fp32.
- ``pytorch-cuda-wan-vae``: the real ``AutoencoderKLWan`` (``WAN_VAE``: 126,892,531 parameters, random weights)
  decoding the whole 81-frame 480x832 clip in bf16 through turbo-edge's own ``CausalWan.decode_pixels`` (diffusers'
  causal frame-by-frame decode with its cache); latency and peak memory (allocated and reserved).
- ``tensorrt-wan``: a Wan model directory written here (``TRT_*``), ``turbo-edge export``'s code (``export_bundle``)
  on it, ``turbo-edge engine``'s code (``build_engines``) on the bundle (fp16: the transformer's fp16 graph, the
  causal decoder's and UMT5's fp32 graphs), each engine timed and run through the ``tensorrt`` runtime backend against
  ONNX Runtime CPU on the bundle's fp32 graph. The shape (``TRT_CLIP``, ``TRT_LAYERS``) is chosen to fit the budget:
  see ``TRT_SHAPE_WHY``.

``--tiny`` swaps every configuration for diffusers' own Wan test sizes (``TINY_*``), and ``--device cpu --tiny`` runs
the three paths' wiring on a CPU (host clock, no CUDA graphs, no TensorRT: the engines are planned, not built): what
the unit tests run end to end. Nothing here has run on a GPU yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _gpu import Budget, Device, add_row, capture_graph, latency_stats, note, run_backend, runs_for, skip

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json, as diffusers 0.42's WanTransformer3DModel takes it.
WAN_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2), "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
    "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960, "num_layers": 30, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
}
# Its vae/config.json (AutoencoderKLWan; latents_mean / latents_std are diffusers' defaults, which are Wan2.1's).
WAN_VAE: dict[str, Any] = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                           "temperal_downsample": [False, True, True], "dropout": 0.0}
# What those configs build (counted on the meta device; the released checkpoints hold the same counts).
WAN_PARAMETERS = {"transformer": 1_418_996_800, "vae": 126_892_531}
# diffusers' own Wan test sizes (tests/pipelines/wan/test_wan.py), for --tiny.
TINY_TRANSFORMER: dict[str, Any] = {**WAN_TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 12, "text_dim": 32, "ffn_dim": 32,
                                    "num_layers": 2, "rope_max_seq_len": 32}
TINY_VAE: dict[str, Any] = {**WAN_VAE, "base_dim": 3, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
GUIDANCE_DIM = 32  # DistillConfig.w_embedding_dim's default: the student's guidance embedding
FLOW_SHIFT = 3.0  # Wan2.1's 480p sampling shift
MODEL = {False: "wan2.1-t2v-1.3b-shaped", True: "wan-tiny"}
VAE_MODEL = {False: "wan2.1-vae", True: "wan-tiny-vae"}


@dataclass(frozen=True)
class Clip:
    frames: int
    height: int
    width: int
    text_len: int


WAN_CLIP = Clip(81, 480, 832, 512)  # Wan2.1-1.3B's 480p: 81 frames of 480x832, UMT5's 512 tokens
TINY_CLIP = Clip(9, 32, 32, 16)

# tensorrt-wan: what the export and the engine builds run on.
TRT_LAYERS = 2
TRT_CLIP = Clip(9, 128, 128, 512)
TRT_TEXT: dict[str, Any] = {"d_model": 4096, "num_layers": 1, "num_heads": 4, "d_kv": 64, "d_ff": 256, "feed_forward_proj": "gated-gelu",
                            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "dropout_rate": 0.0,
                            "is_encoder_decoder": False, "pad_token_id": 0, "eos_token_id": 1}
TINY_TEXT: dict[str, Any] = {**TRT_TEXT, "d_model": 32, "num_layers": 2, "d_kv": 8, "d_ff": 37, "relative_attention_num_buckets": 8,
                             "relative_attention_max_distance": 16}
TRT_EXTERNAL_DATA_THRESHOLD = 0  # every graph's weights in a side file, as the > 2 GiB full-size transformer graph has them
TRT_SHAPE_WHY = (
    "The export runs on the GPU machine's CPUs (PyTorch tracing, ONNX Runtime parity gates at the profile's min/opt/max, the fp16 "
    "conversion) and each engine build times its kernels, all inside the check's budget next to the PyTorch paths. So the transformer "
    "keeps Wan2.1-1.3B's block at full width (1536 = 12 x 128 heads, FFN 8960, UMT5's 4096-wide text, RMS q/k norm across heads, "
    "3D RoPE) with 2 of its 30 blocks: every op kind and every matmul shape of the real model is in the graph, which is what the "
    "parser and the builder are tested on, and the 28 identical blocks left out would only repeat them. The clip is 9 frames "
    "(1 + 2 x 4: the causal first frame and two groups of four, the fewest that exercise the decoder's cache twice) at 128x128 "
    "(latents 3x16x16, 192 tokens; the profile's batch 1..4), so the unrolled causal decoder, which is the real AutoencoderKLWan at "
    "full width, traces and builds in seconds to minutes instead of tens of minutes. UMT5 is one 4096-wide layer over a 61-piece "
    "vocabulary with the real 512-token mask input. Every graph writes its weights to external data (threshold 0), as the "
    "full 5.7 GB transformer graph must, so the parser's external-data path is exercised too.")
ENGINE_ORDER = ("unet", "vae_decoder", "text_encoder")  # most valuable first: the transformer, then the causal decoder
ENGINE_NEED_S = {"unet": 150, "vae_decoder": 180, "text_encoder": 60}  # to start one build (estimates, unverified)


# --- pure logic (unit-tested on CPU) ---------------------------------------------------------------------------------

def transformer_config(tiny: bool, layers: int | None = None) -> dict[str, Any]:
    cfg = dict(TINY_TRANSFORMER if tiny else WAN_TRANSFORMER)
    if layers is not None:
        cfg["num_layers"] = int(layers)
    return cfg


def vae_config(tiny: bool) -> dict[str, Any]:
    return dict(TINY_VAE if tiny else WAN_VAE)


def text_config(tiny: bool, vocab_size: int) -> dict[str, Any]:
    """A UMT5 encoder as wide as the transformer's ``text_dim`` (its layers and vocabulary reduced)."""
    return {**(TINY_TEXT if tiny else TRT_TEXT), "vocab_size": int(vocab_size)}


def geometry(transformer: dict[str, Any], vae: dict[str, Any], clip: Clip) -> dict[str, Any]:
    """Latent shape and tokens per call of ``clip``, with turbo-edge's own rules (``CausalWan``'s latent geometry,
    ``WanFamily``'s patch and RoPE checks): 81 frames of 480x832 -> latents 16x21x60x104, 21 x 30 x 52 = 32,760 tokens."""
    from turbo_edge.core.autoencoders import CausalWan
    from turbo_edge.core.denoiser import FAMILIES

    family, geo = FAMILIES["WanTransformer3DModel"], CausalWan().config_geometry(vae)
    geo.check(clip.frames, clip.height, clip.width, geo.spatial_factor * family.spatial_patch(transformer))
    f, h, w = geo.latent_frames(clip.frames), clip.height // geo.spatial_factor, clip.width // geo.spatial_factor
    family.check_latent_size(transformer, f, h, w)
    p_t, p_h, p_w = (int(p) for p in transformer["patch_size"])
    return {"frames": clip.frames, "pixels": [clip.height, clip.width], "latent": [geo.channels, f, h, w],
            "patch_grid": [f // p_t, h // p_h, w // p_w], "tokens": (f // p_t) * (h // p_h) * (w // p_w),
            "text": [clip.text_len, int(transformer["text_dim"])], "decoded_frames": geo.pixel_frames(f)}


def kept_fp32(name: str, keep: tuple[str, ...] | list[str] | None) -> bool:
    """diffusers' rule (``load_model_dict_into_meta``): a tensor stays fp32 when a dotted part of its name is one of
    the model's ``_keep_in_fp32_modules``."""
    return bool(keep) and any(part in keep for part in name.split("."))


def manifest_feeds(entry: dict[str, Any], point: str = "opt", seed: int = 0, vocab: int = 32, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Inputs for one component of a bundle at a profile point: floats N(0, 1), ``timestep`` 500, token ids in
    [1, vocab) and, beside a mask, ids past each prompt's length set to ``pad_id`` with the mask a prefix of ones
    (the first row full length, the last one token), as the tokenizer makes them."""
    rng = np.random.default_rng(seed)
    shapes = entry["profile"][point]
    dtypes = {s["name"]: s.get("dtype", "float32") for s in entry.get("inputs", [])}
    feeds: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name == "attention_mask":
            continue
        if dtypes.get(name) == "int64":
            feeds[name] = rng.integers(1, vocab, size=shape, dtype=np.int64)
        elif name == "timestep":
            feeds[name] = np.full(shape, 500.0, np.float32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    if "attention_mask" in shapes:
        b, length = shapes["attention_mask"]
        lengths = rng.integers(1, length + 1, size=b)
        lengths[0] = length
        if b > 1:
            lengths[-1] = 1
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
        if "input_ids" in feeds:
            feeds["input_ids"] = np.where(mask == 1, feeds["input_ids"], pad_id).astype(np.int64)
        feeds["attention_mask"] = mask
    return feeds


def output_shapes(entry: dict[str, Any], point: str = "opt") -> dict[str, tuple[int, ...]]:
    """Each output's shape at a profile point: its named axes bound from the inputs' shapes there."""
    bound: dict[str, int] = {}
    for spec in entry["inputs"]:
        for dim, size in zip(spec["shape"], entry["profile"][point][spec["name"]]):
            if isinstance(dim, str):
                bound[dim] = int(size)
    out = {}
    for spec in entry["outputs"]:
        missing = [d for d in spec["shape"] if isinstance(d, str) and d not in bound]
        if missing:
            raise ValueError(f"output {spec['name']}'s axes {missing} are not axes of any input")
        out[spec["name"]] = tuple(bound[d] if isinstance(d, str) else int(d) for d in spec["shape"])
    return out


def transformer_cases(precisions: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(precision, batch, mode) in the order they run, most valuable first: per precision both calls eager (a
    teacher ÷ student ratio as soon as possible), then both as CUDA graphs."""
    return [(p, b, m) for p in precisions for m in ("eager", "cuda_graph") for b in (2, 1)]


# --- torch helpers (run on CPU in the tests at tiny sizes) -----------------------------------------------------------

def cast_as_loaded(module: Any, dtype: Any) -> tuple[Any, int]:
    """``module`` cast in place to ``dtype`` as diffusers' ``from_pretrained(torch_dtype=dtype)`` leaves it (``kept_fp32``
    tensors fp32); returns it and the number of parameters kept fp32."""
    import torch

    keep = getattr(module, "_keep_in_fp32_modules", None)
    kept = 0
    for name, param in module.named_parameters():
        if param.is_floating_point():
            fp32 = kept_fp32(name, keep)
            kept += param.numel() if fp32 else 0
            param.data = param.data.to(torch.float32 if fp32 else dtype)
    for name, buf in list(module.named_buffers()):
        if buf.is_floating_point():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            owner._buffers[leaf] = buf.to(torch.float32 if kept_fp32(name, keep) else dtype)
    return module, kept


def guidance_parameters(cfg: dict[str, Any]) -> int:
    """The student's guidance embedding: ``cond_proj``, GUIDANCE_DIM -> the time embedder's input (freq_dim), no bias."""
    return GUIDANCE_DIM * int(cfg["freq_dim"])


def module_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def build_transformer(cfg: dict[str, Any], device: str, seed: int) -> Any:
    """The transformer with random weights, built on ``device`` (1.4 B parameters: seconds on a GPU, minutes on a
    CPU), with the student's guidance embedding attached (zero-initialised: teacher calls are unchanged). The same
    seed builds the same weights, so each precision starts from one fp32 model."""
    import torch
    from diffusers import WanTransformer3DModel

    from turbo_edge.core.denoiser import attach_wan_guidance_embedding

    torch.manual_seed(seed)
    with torch.device(device):
        net = WanTransformer3DModel(**cfg)
    attach_wan_guidance_embedding(net, GUIDANCE_DIM)
    return net.eval().requires_grad_(False)


def transformer_inputs(geo: dict[str, Any], seed: int) -> dict[str, Any]:
    """CPU fp32 inputs: the teacher's CFG call (batch 2: a prompt and its unconditional twin) and the student's call
    (batch 1: the teacher call's first row, with a guidance embedding)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, *geo["latent"], generator=g)
    text = torch.randn(2, *geo["text"], generator=g)
    t = torch.full((2,), 500.0)
    return {2: (sample, t, text, None), 1: (sample[:1], t[:1], text[:1], torch.randn(1, GUIDANCE_DIM, generator=g))}


def write_wan_model_dir(out: Path, transformer: dict[str, Any], vae: dict[str, Any], text: dict[str, Any], max_length: int,
                        seed: int = 0) -> Path:
    """A ``WanPipeline`` directory with random weights (transformer, AutoencoderKLWan, UMT5 encoder, a T5 Unigram
    tokenizer over the world's words, flow-matching scheduler), reused when its stamp matches the configs."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    from turbo_edge.core.wan import unigram_vocab
    from turbo_edge.core.world import vocabulary

    vocab = unigram_vocab(vocabulary())
    stamp = json.loads(json.dumps({"transformer": transformer, "vae": vae, "text": {**text, "vocab_size": len(vocab)},
                                   "max_length": max_length, "seed": seed, "flow_shift": FLOW_SHIFT}))
    stamp_file = out / "gpu_check_stamp.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.manual_seed(seed)
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)
    WanTransformer3DModel(**transformer).save_pretrained(out / "transformer", safe_serialization=True)
    AutoencoderKLWan(**vae).save_pretrained(out / "vae", safe_serialization=True)
    UMT5EncoderModel(UMT5Config(**{**text, "vocab_size": len(tokenizer)})).save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT).save_pretrained(out / "scheduler")
    import diffusers

    index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "UMT5EncoderModel"],
             "tokenizer": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "WanTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLWan"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    stamp_file.write_text(json.dumps(stamp, indent=1) + "\n")
    return out


def _out(args: argparse.Namespace) -> Path | None:
    return getattr(args, "out_path", None)


# --- pytorch-cuda-wan ------------------------------------------------------------------------------------------------

def measure(call: Any, dev: Device, mode: str, seconds: float, max_runs: int, warmup: int, estimate_ms: float | None) -> tuple[Any, dict[str, Any]]:
    """One case: eager calls, or ``call`` captured into a CUDA graph and replayed. Runs sized by ``runs_for`` from
    the first call's host-clock time (eager) or the eager case's (``estimate_ms``)."""
    import torch

    info: dict[str, Any] = {}
    with torch.no_grad():
        if mode == "eager":
            out, first_ms = dev.clock_ms(call)
            info["first_call_ms"] = first_ms
            fn = call
            estimate_ms = first_ms
        else:
            start = time.perf_counter()
            fn, out = capture_graph(call)
            fn()
            dev.sync()
            info["capture_s"] = time.perf_counter() - start
            if estimate_ms is None:
                _, estimate_ms = dev.clock_ms(fn)
        runs = runs_for(estimate_ms, seconds, min(3, max_runs), max_runs)
        info.update(latency_stats(dev.times(fn, warmup, runs)))
        info["warmup"] = warmup
    return out, info


def run_transformer(record: dict[str, Any], budget: Budget, args: argparse.Namespace, path: str = "pytorch-cuda-wan") -> None:
    import torch

    from turbo_edge.core.denoiser import FAMILIES

    dev, tiny, out_path = Device(args.device), bool(args.tiny), _out(args)
    cfg = transformer_config(tiny)
    geo = geometry(cfg, vae_config(tiny), TINY_CLIP if tiny else WAN_CLIP)
    family, model = FAMILIES["WanTransformer3DModel"], MODEL[tiny]
    x = transformer_inputs(geo, args.seed)
    need = {2: 3, 1: 2} if tiny else {2: 25, 1: 15}  # seconds to start a case (estimates)

    def call_on(net: Any, batch: int, dtype: Any) -> Any:
        sample, t, text, guidance = x[batch]
        sample, text = sample.to(dev.kind, dtype), text.to(dev.kind, dtype)
        t, guidance = t.to(dev.kind), None if guidance is None else guidance.to(dev.kind, dtype)
        return lambda: family.forward(net, sample, t, text, guidance)

    start = time.perf_counter()
    net = build_transformer(cfg, dev.kind, args.seed)
    section: dict[str, Any] = {
        "config": cfg, "parameters": sum(p.numel() for p in net.parameters()) - guidance_parameters(cfg),
        "guidance_parameters": guidance_parameters(cfg),
        "parameters_expected": None if tiny else WAN_PARAMETERS["transformer"], "guidance_dim": GUIDANCE_DIM, "geometry": geo,
        "build_s": time.perf_counter() - start, "device": dev.kind, "tiny": tiny,
        "dtype_rule": "as diffusers' from_pretrained(torch_dtype=...) loads it: _keep_in_fp32_modules stay fp32",
        "timestep": 500.0, "calls": {"2": "teacher: one CFG call (prompt + unconditional)", "1": "student: one call with its guidance embedding"},
    }
    note(record, "wan_transformer", section, out_path)
    reference = None
    if budget.allows(need[1]):
        try:  # fp32 attention over 32,760 tokens needs the memory-efficient kernel; without it, the rows go without parity
            with torch.no_grad():
                ref, ms = dev.clock_ms(call_on(net, 1, torch.float32))
            reference = ref.float()
            section["fp32_reference"] = {"batch": 1, "mode": "eager", "ms": ms, "max_abs": float(reference.abs().max()),
                                         "finite": bool(torch.isfinite(reference).all())}
        except Exception as exc:
            section["fp32_reference"] = {"error": f"{type(exc).__name__}: {exc}"}
            skip(record, path, f"{model} fp32 reference", f"failed: {type(exc).__name__}: {exc}")
        note(record, "wan_transformer", section, out_path)
    else:
        skip(record, path, f"{model} fp32 reference", budget.reason(need[1]))
    del net
    dev.empty_cache()
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    eager_ms: dict[tuple[str, int], float] = {}
    loaded: dict[str, Any] = {}  # at most one precision's model at a time

    def model_at(precision: str) -> Any:
        if precision not in loaded:
            loaded.clear()
            dev.empty_cache()
            net, kept = cast_as_loaded(build_transformer(cfg, dev.kind, args.seed), dtypes[precision])
            section.setdefault("weights", {})[precision] = {"bytes": module_bytes(net), "fp32_kept_parameters": kept}
            loaded[precision] = net
        return loaded[precision]

    for precision, batch, mode in transformer_cases(("bf16", "fp16")):
        case = f"{model} b{batch} {precision} {mode}"
        if precision == "bf16" and dev.kind == "cuda" and not torch.cuda.is_bf16_supported():
            skip(record, path, case, "torch.cuda.is_bf16_supported() is False on this GPU")
            continue
        if mode == "cuda_graph" and not dev.graphs:
            skip(record, path, case, "CUDA graphs need --device cuda")
            continue
        if not budget.allows(need[batch]):
            skip(record, path, case, budget.reason(need[batch]))
            continue
        row: dict[str, Any] = {"path": path, "model": model, "role": "teacher" if batch == 2 else "student", "batch": batch,
                               "precision": precision, "mode": mode, "device": dev.kind, "input_shape": [batch, *geo["latent"]],
                               "tokens": geo["tokens"], "text_len": geo["text"][0]}
        try:
            call = call_on(model_at(precision), batch, dtypes[precision])
            dev.reset_peak()
            out, info = measure(call, dev, mode, args.wan_seconds, args.runs, 1, eager_ms.get((precision, batch)))
            del call  # a captured graph (and its memory pool) goes with the case
            row.update(info)
            if mode == "eager":
                eager_ms[(precision, batch)] = info["first_call_ms"]
            dev.sync()
            row["finite"] = bool(torch.isfinite(out.float()).all())
            if reference is not None:  # the teacher call's first row has the student call's inputs
                diff = (out[:1].float() - reference).abs()
                row.update(max_abs_diff_vs_fp32=float(diff.max()), mean_abs_diff_vs_fp32=float(diff.mean()))
            row.update(dev.memory())
            del out
        except Exception as exc:  # one case failing (a capture error, out of memory) is a result, not a lost run
            row["error"] = f"{type(exc).__name__}: {exc}"
        add_row(record, row, out_path)
    loaded.clear()
    note(record, "wan_transformer", section, out_path)
    dev.empty_cache()


# --- pytorch-cuda-wan-vae --------------------------------------------------------------------------------------------

def run_vae(record: dict[str, Any], budget: Budget, args: argparse.Namespace, path: str = "pytorch-cuda-wan-vae") -> None:
    import torch
    from diffusers import AutoencoderKLWan

    from turbo_edge.core.autoencoders import CausalWan

    dev, tiny, out_path = Device(args.device), bool(args.tiny), _out(args)
    cfg = vae_config(tiny)
    geo = geometry(transformer_config(tiny), cfg, TINY_CLIP if tiny else WAN_CLIP)
    need = 5 if tiny else 45
    model = VAE_MODEL[tiny]
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    with torch.device(dev.kind):
        vae = AutoencoderKLWan(**cfg).eval().requires_grad_(False)
    vae, _ = cast_as_loaded(vae, torch.bfloat16)  # AutoencoderKLWan keeps nothing fp32: all of it bf16
    note(record, "wan_vae", {"config": cfg, "parameters": sum(p.numel() for p in vae.parameters()),
                             "parameters_expected": None if tiny else WAN_PARAMETERS["vae"], "geometry": geo, "build_s": time.perf_counter() - start,
                             "weights_bytes": module_bytes(vae), "decoder_parameters": sum(p.numel() for p in vae.decoder.parameters()),
                             "through": "turbo_edge.core.autoencoders.CausalWan.decode_pixels (diffusers' causal decode, its cache, no tiling)"},
         out_path)
    case = f"{model} decoder b1 bf16 eager"
    if not budget.allows(need):
        skip(record, path, case, budget.reason(need))
        return
    g = torch.Generator().manual_seed(args.seed)
    latents = torch.randn(1, *geo["latent"], generator=g).to(dev.kind)
    auto = CausalWan()

    def decode() -> Any:
        return auto.decode_pixels(vae, latents)

    row: dict[str, Any] = {"path": path, "model": model, "component": "decoder, whole clip", "batch": 1, "precision": "bf16", "mode": "eager",
                           "device": dev.kind, "latent_shape": [1, *geo["latent"]]}
    try:
        with torch.no_grad():
            dev.reset_peak()
            video, first_ms = dev.clock_ms(decode)
            row.update(first_call_ms=first_ms, video_shape=list(video.shape), finite=bool(torch.isfinite(video).all()))
            del video
            runs = runs_for(first_ms, args.wan_seconds, 2, max(2, min(args.runs, 5)))
            row.update(latency_stats(dev.times(decode, 0, runs)))
            row["frames_per_s"] = geo["decoded_frames"] / (row["median_ms"] / 1e3)
            row.update(dev.memory())
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    add_row(record, row, out_path)
    dev.empty_cache()


# --- tensorrt-wan ----------------------------------------------------------------------------------------------------

def trt_configs(tiny: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Clip]:
    """(transformer, vae, text encoder without its vocabulary, clip) of the tensorrt-wan model directory."""
    from turbo_edge.core.wan import unigram_vocab
    from turbo_edge.core.world import vocabulary

    vocab = len(unigram_vocab(vocabulary()))
    if tiny:
        configs = transformer_config(True), vae_config(True), text_config(True, vocab), TINY_CLIP
    else:
        configs = transformer_config(False, TRT_LAYERS), vae_config(False), text_config(False, vocab), TRT_CLIP
    if configs[2]["d_model"] != configs[0]["text_dim"]:
        raise ValueError(f"the text encoder's width {configs[2]['d_model']} is not the transformer's text_dim {configs[0]['text_dim']}")
    return configs


def _file_bytes(bundle: Path, files: dict[str, str]) -> dict[str, int]:
    out = {}
    for precision, name in files.items():
        f = bundle / name
        out[precision] = sum(p.stat().st_size for p in (f, f.with_name(f.name + ".data")) if p.is_file())
    return out


def run_tensorrt(record: dict[str, Any], budget: Budget, args: argparse.Namespace, path: str = "tensorrt-wan") -> None:
    from turbo_edge.export import export_bundle
    from turbo_edge.export.onnx_export import run_ort
    from turbo_edge.export.tensorrt_build import GpuInfo, build_engines, plan_builds
    from turbo_edge.spec.bundle import verify_bundle
    from turbo_edge.spec.configs import EngineConfig, ExportConfig

    tiny, out_path = bool(args.tiny), _out(args)
    tcfg, vcfg, text, clip = trt_configs(tiny)
    work = Path(args.work_dir)
    section: dict[str, Any] = {"transformer": tcfg, "vae": vcfg, "text_encoder": text, "clip": asdict(clip),
                               "geometry": geometry(tcfg, vcfg, clip), "why_this_shape": TRT_SHAPE_WHY, "tiny": tiny}
    note(record, "wan_tensorrt", section, out_path)
    start = time.perf_counter()
    model_dir = write_wan_model_dir(work / f"wan-trt-model{'-tiny' if tiny else ''}", tcfg, vcfg, text, clip.text_len, args.seed)
    section["model_dir_s"] = time.perf_counter() - start
    threads = max(1, min(16, os.cpu_count() or 1))
    cfg = ExportConfig(precisions=("fp32", "fp16"), frames=clip.frames, height=clip.height, width=clip.width, openvino_check=False,
                       threads=threads, external_data_threshold=TRT_EXTERNAL_DATA_THRESHOLD, overwrite=True)
    start = time.perf_counter()
    bundle = export_bundle(model_dir, work / f"wan-trt-bundle{'-tiny' if tiny else ''}", cfg)
    manifest = verify_bundle(bundle)
    comps = manifest["components"]
    section["export"] = {"seconds": time.perf_counter() - start, "threads": threads, "bundle": str(bundle),
                         "files": {n: c["files"] for n, c in comps.items()}, "bytes": {n: _file_bytes(bundle, c["files"]) for n, c in comps.items()},
                         "profiles": {n: c["profile"] for n, c in comps.items()},
                         "parity": {n: {p: {k: r.get(k) for k in ("max_abs", "tolerance", "passed")} for p, r in v.items()}
                                    for n, v in manifest["parity"].items()}}
    note(record, "wan_tensorrt", section, out_path)
    vocab = int(text["vocab_size"])
    feeds = {n: manifest_feeds(comps[n], "opt", args.seed, vocab) for n in ENGINE_ORDER}
    refs = {}
    for name in ENGINE_ORDER:  # ONNX Runtime CPU on the fp32 graph: the reference every engine is held to
        refs[name] = next(iter(run_ort(bundle / comps[name]["files"]["fp32"], feeds[name], threads).values())).astype(np.float32)
    section["reference"] = {n: {"backend": "onnxruntime CPU, fp32 graph", "input_shapes": {k: list(v.shape) for k, v in feeds[n].items()},
                                "output_shape": list(refs[n].shape), "max_abs": float(np.abs(refs[n]).max())} for n in ENGINE_ORDER}
    engine_cfg = EngineConfig(bundle=str(bundle), precisions=("fp16",), components=ENGINE_ORDER)
    if args.device != "cuda" or not record["probe"].get("tensorrt_version"):
        planned = plan_builds(manifest, engine_cfg, "none", GpuInfo("no GPU (--device cpu)", (0, 0)))
        section["engines_planned"] = [{k: b[k] for k in ("component", "precision", "onnx", "profile")} for b in planned]
        note(record, "wan_tensorrt", section, out_path)
        skip(record, path, "engine builds and runs", "TensorRT needs --device cuda and the tensorrt package: the engines are planned only")
        return
    built: list[str] = []
    for name in ENGINE_ORDER:
        if not budget.allows(ENGINE_NEED_S[name]):
            skip(record, path, f"engine {name}", budget.reason(ENGINE_NEED_S[name]))
            continue
        start = time.perf_counter()
        try:
            [plan] = build_engines(bundle, EngineConfig(bundle=str(bundle), precisions=("fp16",), components=(name,)))
            section.setdefault("engines", []).append({"component": name, "engine": plan.name, "build_s": time.perf_counter() - start,
                                                      "bytes": plan.stat().st_size})
            built.append(name)
        except Exception as exc:
            section.setdefault("engines", []).append({"component": name, "error": f"{type(exc).__name__}: {exc}",
                                                      "seconds": time.perf_counter() - start})
            skip(record, path, f"engine {name}", f"build failed: {type(exc).__name__}: {exc}")
        note(record, "wan_tensorrt", section, out_path)
    run_engines(record, budget, args, bundle, built, feeds, refs, path)


def run_engines(record: dict[str, Any], budget: Budget, args: argparse.Namespace, bundle: Path, built: list[str],
                feeds: dict[str, dict[str, np.ndarray]], refs: dict[str, np.ndarray], path: str) -> None:
    """Each built engine through the ``tensorrt`` runtime backend, plain and replayed from a CUDA graph, against the
    ONNX Runtime CPU reference on the same inputs."""
    from turbo_edge.runtime.backends.tensorrt import TensorRTBackend
    from turbo_edge.spec.bundle import load_bundle

    b = load_bundle(bundle, runnable=False)
    engines = b.manifest.get("engines") or {}
    for name in built:
        precision = "fp16" if "fp16" in engines.get(name, {}) else "fp32"
        for graph in (False, True):
            label = f"tensorrt {precision} {'cuda_graph' if graph else 'eager'}"
            if not budget.allows(15):
                skip(record, path, f"{name} {label}", budget.reason(15))
                continue
            row: dict[str, Any] = {"path": path, "model": f"wan-trt-{TRT_LAYERS}-block" if not args.tiny else "wan-tiny", "component": name,
                                   "backend": label, "precision": precision, "input_shapes": {k: list(v.shape) for k, v in feeds[name].items()},
                                   "timing": "host clock, host<->device copies included"}
            try:
                backend = TensorRTBackend(cuda_graph=graph)
                entry = b.manifest["components"][name]
                stats, got = run_backend(backend, b.engine_path(name, precision), feeds[name], output_shapes(entry, "opt"), args.warmup, args.runs)
                diff = np.abs(got - refs[name])
                row.update(stats, runs=args.runs, max_abs_diff_vs_ort_cpu_fp32=float(diff.max()), mean_abs_diff_vs_ort_cpu_fp32=float(diff.mean()),
                           finite=bool(np.isfinite(got).all()))
                backend.close()
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            add_row(record, row, _out(args))

