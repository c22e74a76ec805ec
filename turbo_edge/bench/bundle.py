"""``turbo-edge bench --bundle``: a bundle's stages and its own few-step sampler through the torch-free runtime.

Imports no torch (a test checks it). Each stage is timed on the runtime's backend bindings at the bench's shapes
(text encoder: one prompt; UNet: one call of the sampler's rows; VAE: the decode of one batch of videos), and end
to end is ``Pipeline.run`` with the text-encoder cache off, so every video pays its text encoding. FLOPs come from
the ONNX graphs (``runtime.flops``), whatever backend runs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from turbo_edge.bench.common import finish_row, peak_rss_mb, stage_entry, time_calls
from turbo_edge.runtime.flops import onnx_flops
from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.runtime.samplers import guidance_embedding
from turbo_edge.spec import host
from turbo_edge.spec.backends import GPU_BACKENDS
from turbo_edge.spec.bundle import DECODER_FIRST_STEP, Bundle
from turbo_edge.spec.configs import BenchConfig, RuntimeConfig
from turbo_edge.spec.errors import BackendUnavailableError, RuntimeInputError
from turbo_edge.spec.noise import normal


def video_geometry(bundle: Bundle, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int]:
    vid = bundle.video
    return frames or int(vid["frames"]), height or int(vid["height"]), width or int(vid["width"])


def check_profile(bundle: Bundle, frames: int, height: int, width: int, batch: int) -> None:
    """One-line error naming the bundle's range where frames / height / width / batch fall outside its UNet profile."""
    factor = int(bundle.video["height"]) // int(bundle.latent["height"])
    profile = bundle.profile("unet")
    if "min" not in profile or "sample" not in profile["min"]:
        return
    lo, hi = profile["min"]["sample"], profile["max"]["sample"]
    rows = 2 if bundle.sampler.uses_cfg else 1
    ranges = {"frames": (bundle.pixel_frames(lo[2]), bundle.pixel_frames(hi[2]), frames), "height": (lo[3] * factor, hi[3] * factor, height),
              "width": (lo[4] * factor, hi[4] * factor, width), "batch": (max(1, lo[0] // rows), hi[0] // rows, batch)}
    outside = [f"--{k} {v}" for k, (a, b, v) in ranges.items() if not a <= v <= b]
    if outside or height % factor or width % factor:
        span = ", ".join(f"{k} {a}-{b}" for k, (a, b, _) in ranges.items())
        what = ", ".join(outside) or f"height/width {height}x{width} (not multiples of the VAE's factor {factor})"
        raise RuntimeInputError(f"{what} is outside the bundle's profile ({span}{'; CFG: 2 UNet rows per video' if rows == 2 else ''}; "
                                f"manifest components.unet.profile of {bundle.root}); choose shapes inside it or re-export with a wider profile")


def _component_precision(bundle: Bundle, name: str, precision: str) -> str:
    return precision if bundle.component(name)["files"].get(precision) else "fp32"


def _peak(backend: str, precision: str, threads: int, gpu: Any) -> dict[str, Any] | None:
    if backend in GPU_BACKENDS:
        return None if gpu is None else host.gpu_peak_flops(gpu.device_name(), precision)
    return host.cpu_peak_flops(precision, cores=min(threads, host.available_cores()))


def _gpu_timer(backend: str) -> Any:
    if backend not in GPU_BACKENDS:
        return None
    from turbo_edge.runtime.cuda_timing import CudaEvents

    try:
        return CudaEvents()
    except BackendUnavailableError:
        return None  # host clock only: the backend itself says what it needs when it loads


def bench_bundle(cfg: BenchConfig, bundle: Bundle, backend: str, precision: str, threads: int, decoder: str | None = None) -> dict[str, Any]:
    """One results row (with its stages) for ``bundle`` on ``backend`` at ``precision`` with ``decoder`` (None: its default)."""
    frames, height, width = video_geometry(bundle, cfg.frames, cfg.height, cfg.width)
    check_profile(bundle, frames, height, width, cfg.batch)
    pipe = Pipeline(bundle, RuntimeConfig(bundle=str(bundle.root), backend=backend, precision=precision, threads=threads,
                                          verify=False, text_cache_size=0, decoder=decoder))  # verified once when the bundle was loaded
    try:
        return _bench(cfg, pipe, backend, precision, threads, (frames, height, width))
    finally:
        pipe.close()


def _bench(cfg: BenchConfig, pipe: Pipeline, backend: str, precision: str, threads: int, video: tuple[int, int, int]) -> dict[str, Any]:
    bundle, spec = pipe.bundle, pipe.bundle.sampler
    steps = pipe.resolve_steps(cfg.steps)
    shape = pipe.latent_shape(*video)
    guidance = spec.guidance if cfg.guidance is None else float(cfg.guidance)
    b = cfg.batch
    rows = 2 * b if spec.uses_cfg else b
    length, hidden = int(bundle.text["max_length"]), int(bundle.text["hidden_size"])
    gpu = _gpu_timer(backend)
    device_memory: list[int] = []

    def timed(call: Any, binding: Any = None, warmup: int = cfg.warmup, runs: int = cfg.runs) -> dict[str, Any]:
        device_ms = None
        if gpu is not None:
            from turbo_edge.runtime.cuda_timing import binding_stream

            stream = binding_stream(binding)

            def device_ms(fn: Any) -> float:
                return gpu.time_ms(fn, stream)

        stats = time_calls(call, warmup, runs, device_ms)
        if gpu is not None:
            device_memory.append(gpu.memory_used_bytes())
        return stats

    # Text encoder: one prompt per call, as the pipeline encodes them (plus the empty prompt under CFG).
    te = pipe.sessions["text_encoder"]
    encoding = pipe.tokenizer.encode(cfg.prompt)
    te_inputs = {"input_ids": (1, length), **({"attention_mask": (1, length)} if encoding.mask is not None else {})}  # UMT5: a mask
    te_binding = te.allocate(te_inputs, {"last_hidden_state": (1, length, hidden)})
    te_binding.inputs["input_ids"][0] = encoding.ids
    if encoding.mask is not None:
        te_binding.inputs["attention_mask"][0] = encoding.mask
    te_stats = timed(lambda: te.infer(te_binding), te_binding)
    text = te_binding.outputs["last_hidden_state"][0].astype(np.float32)

    # UNet: one sampler call at the rows the sampler runs (CFG: unconditional + conditional).
    unet = pipe.sessions["unet"]
    inputs = {"sample": (rows, *shape), "timestep": (rows,), "encoder_hidden_states": (rows, length, hidden)}
    if spec.w_embedding_dim is not None:
        inputs["timestep_cond"] = (rows, spec.w_embedding_dim)
    unet_binding = unet.allocate(inputs, {"out_sample": (rows, *shape)})
    unet_binding.inputs["sample"][:] = np.stack([normal(cfg.seed, i, shape) for i in range(rows)])
    unet_binding.inputs["timestep"].fill(spec.timesteps[steps][0])
    unet_binding.inputs["encoder_hidden_states"][:] = text
    if spec.w_embedding_dim is not None:
        unet_binding.inputs["timestep_cond"][:] = guidance_embedding(guidance, spec.w_embedding_dim, rows)
    unet_stats = timed(lambda: unet.infer(unet_binding), unet_binding)

    # VAE decode: every frame of one batch of videos, in the profile-sized chunks the pipeline uses.
    latents = np.stack([normal(cfg.seed + 1, i, shape) for i in range(b)]).astype(np.float32)
    vae_stats = timed(lambda: pipe.decode(latents))

    flops = _flops(pipe, precision, b, shape, length, {k: tuple(v) for k, v in inputs.items()})
    te_p, unet_p, vae_p = (_component_precision(bundle, n, precision) for n in ("text_encoder", "unet", pipe.decoder_component))
    stages = [
        stage_entry("text_encoder", te_stats, b + (1 if spec.uses_cfg else 0), flops["text_encoder"], _peak(backend, te_p, threads, gpu)),
        stage_entry("unet", unet_stats, steps, flops["unet"], _peak(backend, unet_p, threads, gpu)),
        stage_entry("vae_decoder", vae_stats, 1, flops["vae_decoder"], _peak(backend, vae_p, threads, gpu)),
    ]
    prompts = [cfg.prompt] * b
    e2e = timed(lambda: pipe.run(prompts, steps=steps, seed=cfg.seed, guidance=cfg.guidance, frames=video[0], height=video[1],
                                 width=video[2]), runs=cfg.e2e_runs or cfg.runs)
    row = {
        "row": f"bundle {bundle.manifest.get('source', {}).get('kind', '?')} {backend} {precision}"
               + ("" if pipe.decoder_name == "full" else f" {pipe.decoder_name} decoder"), "source": "bundle", "decoder": pipe.decoder_name,
        "model": str(bundle.root), "model_kind": bundle.manifest.get("source", {}).get("kind"), "sampler": spec.kind,
        "backend": backend, "precision": precision, "precisions": {"text_encoder": te_p, "unet": unet_p, "vae_decoder": vae_p},
        "steps": steps, "batch": b, "unet_rows": rows, "cfg": bool(spec.uses_cfg), "guidance": guidance, "threads": threads,
        "timing": "CUDA events (device), host clock beside" if gpu is not None else "host clock (perf_counter)",
        "verified_on_gpu": False if backend in GPU_BACKENDS else None, "gpu": None if gpu is None else gpu.device_name(),
        "video": {"frames": video[0], "height": video[1], "width": video[2]},
        "input_shapes": {"text_encoder": {k: list(v) for k, v in te_inputs.items()}, "unet": {k: list(v) for k, v in inputs.items()},
                         "vae_decoder": {"latent": [b, *shape] if pipe.decoder_layout in ("clip", "video", "steps")
                                         else [b * shape[1], shape[0], shape[2], shape[3]]}},  # whole clips: a variant or a causal decoder
    }
    finish_row(row, stages, e2e, composed_only=False)
    row["peak_rss_mb"] = peak_rss_mb()
    row["device_memory_mb"] = max(device_memory) / 1e6 if device_memory else None
    return row


def _flops(pipe: Pipeline, precision: str, b: int, shape: tuple[int, ...], length: int,
           unet_inputs: dict[str, tuple[int, ...]]) -> dict[str, int]:
    bundle = pipe.bundle
    c, f, h, w = shape
    text_inputs = {t["name"]: (1, length) for t in bundle.component("text_encoder").get("inputs") or [{"name": "input_ids"}]}  # UMT5: + mask
    flops = {"text_encoder": onnx_flops(bundle.model_path("text_encoder", precision), text_inputs),
             "unet": onnx_flops(bundle.model_path("unet", precision), unet_inputs)}
    vae_file = bundle.model_path(pipe.decoder_component, precision)
    if pipe.decoder_layout == "video":  # a causal autoencoder's whole-clip decoder (DiT): one clip per call
        return {**flops, "vae_decoder": b * onnx_flops(vae_file, {"latent": (1, c, f, h, w)})}
    if pipe.decoder_layout == "steps":  # its step graphs: the first latent frame's, then one step per later frame
        first = onnx_flops(bundle.model_path(DECODER_FIRST_STEP, precision), {"latent": (1, c, 1, h, w)})
        step = onnx_flops(vae_file, {"latent": (1, c, 1, h, w), **pipe.cache_shapes(1, h, w)})
        return {**flops, "vae_decoder": b * (first + (f - 1) * step)}
    clips = pipe.decoder_layout == "clip"  # a variant decodes whole clips: latent [n, C, F, h, w]
    total = b if clips else b * f
    profile = bundle.profile(pipe.decoder_component)
    chunk = min(total, int(profile["max"]["latent"][0])) if "latent" in profile.get("max", {}) else total  # as Pipeline.decode
    sizes = [min(chunk, total - start) for start in range(0, total, chunk)]
    vae = sum(onnx_flops(vae_file, {"latent": (n, c, f, h, w) if clips else (n, c, h, w)}) * sizes.count(n) for n in set(sizes))
    return {**flops, "vae_decoder": vae}


__all__ = ["bench_bundle", "check_profile", "video_geometry"]
