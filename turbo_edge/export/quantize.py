"""Lower-precision graphs from the fp32 ONNX: fp16 (precision in the graph) and int8 Q/DQ via NNCF.

Both keep fp32 inputs and outputs, so every runtime feeds and reads the same arrays whatever the precision,
and TensorRT's strongly typed networks take the precision from the graph (TensorRT 10/11 dropped the
FP16/INT8 builder flags and calibrators).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.export.onnx_export import EXTERNAL_DATA_THRESHOLD, save_model
from turbo_edge.spec import logs
from turbo_edge.spec.configs import INT8_SCOPES
from turbo_edge.spec.sampler import DEFAULT_TEACHER_STEPS

log = logging.getLogger(__name__)

# Ops kept fp32 inside fp16 graphs (on top of ORT's default block list): normalisation statistics and softmax
# sums overflow half's 65504 on real activations (GroupNorm exports as InstanceNormalization over reshaped
# channels). On the random tiny test UNet this costs accuracy (max_abs 1.8e-3 -> 2.3e-3: the extra casts
# round anyway), so it is a bet on large models. Pow/Sqrt/ReduceMean are NOT listed: blocking Sqrt made the
# converter emit duplicate Cast node names around the attention scale (an invalid graph in ORT 1.31).
FP16_KEEP_FP32_OPS = ("InstanceNormalization", "LayerNormalization", "Softmax")

CalibrationFeeds = list[dict[str, np.ndarray]]
# (model, cfg, shapes, unet_input_names) -> UNet input dicts seen along the model's own sampler trajectory.
CalibrationSource = Callable[[Any, Any, Any, tuple[str, ...]], CalibrationFeeds]
CALIBRATION_SOURCES: dict[str, CalibrationSource] = {}


def register_calibration(sampler_kind: str) -> Callable[[CalibrationSource], CalibrationSource]:
    def deco(fn: CalibrationSource) -> CalibrationSource:
        CALIBRATION_SOURCES[sampler_kind] = fn
        return fn

    return deco


def convert_fp16(src: Path, dst: Path, keep_fp32_ops: Iterable[str] = FP16_KEEP_FP32_OPS, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """fp16 weights and compute with fp32 I/O (``keep_io_types``). onnxconverter-common's converter produced
    graphs with mismatched Casts for the UNet/VAE here; onnxruntime.transformers' works (docs/decisions.md, "fp16 graphs")."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=block, disable_shape_infer=False)
    return save_model(half, dst, external_data_threshold)


@dataclass(frozen=True)
class CalibrationPlan:
    """What int8 calibration will run: ``prompts`` trajectories of the model's own sampler, one UNet call per
    timestep (batch 1 prompt, as the runtime calls it), and the ``samples`` inputs recorded along them that NNCF
    gets. Trajectories stop being run once they have supplied ``samples`` inputs."""

    prompts: int
    timesteps: int
    samples: int

    @property
    def calls(self) -> int:
        return self.prompts * self.timesteps

    def estimate(self, seconds_per_call: float) -> str:
        return (f"int8 calibration: {self.prompts} prompts x {self.timesteps} timesteps = {self.calls} UNet calls, "
                f"~{self.calls * seconds_per_call:.0f} s (first call {seconds_per_call:.2f} s); then NNCF statistics on {self.samples} inputs")


def calibration_plan(prompts: int, timesteps: int, max_samples: int) -> CalibrationPlan:
    """Only as many prompts as ``max_samples`` inputs need (``int8_calibration_prompts`` at most)."""
    if min(prompts, timesteps, max_samples) < 1:
        raise ValueError(f"int8 calibration needs prompts, timesteps and samples >= 1, got {prompts}, {timesteps}, {max_samples}")
    needed = min(prompts, -(-max_samples // timesteps))
    return CalibrationPlan(needed, timesteps, min(needed * timesteps, max_samples))


class MeteredUNet:
    """The UNet as calibration calls it: counts calls, times the first and logs the plan's estimate from it, then
    shows a progress bar over the plan's calls. Attributes (``config``, ...) are the wrapped module's."""

    def __init__(self, unet: Any, plan: CalibrationPlan) -> None:
        self.unet, self.plan, self.calls, self.bar = unet, plan, 0, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.unet(*args, **kwargs)
        self.calls += 1
        if self.bar is None:
            log.info(self.plan.estimate(time.perf_counter() - start))
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.plan.calls, initial=1, desc="int8 calibration", unit="call", dynamic_ncols=True, leave=False, mininterval=1.0)
        else:
            self.bar.update(1)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unet, name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _timestep_major(per_prompt: list[CalibrationFeeds], samples: int) -> CalibrationFeeds:
    """Interleave per-prompt trajectories step by step (every prompt's first step, then the second, ...), so any
    prefix or stride (the parity probe) spans the timesteps; then keep ``samples``."""
    steps = max(len(f) for f in per_prompt)
    return [f[j] for j in range(steps) for f in per_prompt if j < len(f)][:samples]


def _prompts(cfg: Any) -> list[str]:
    """The calibration prompts: the user's (``--prompts FILE`` or a DATA's captions, resolved into
    ``int8_calibration_prompt_list``), else the world's training prompts."""
    from turbo_edge.core import world

    chosen = list(getattr(cfg, "int8_calibration_prompt_list", None) or ())
    return chosen or [a.prompt for a in world.prompt_set("train", cfg.int8_calibration_prompts, seed=cfg.seed)]


@register_calibration("ddim_cfg")
def teacher_calibration(model: Any, cfg: Any, shapes: Any, input_names: tuple[str, ...]) -> CalibrationFeeds:
    """UNet inputs along the teacher's DDIM+CFG trajectory at the bundle's timesteps (``int8_calibration_steps``,
    else ``default_steps``, else 50), on training prompts; one item per prompt and step, laid out as the runtime
    calls the UNet: [uncond_i, cond_i]."""
    import dataclasses

    import torch
    from diffusers import DDIMScheduler

    from turbo_edge.core.sampling import ddim_cfg_sample, encode_text, initial_noise, latent_shape

    if "timestep_cond" in input_names:
        raise ValueError("a UNet with a guidance embedding (timestep_cond) is a student: calibrate it with its own sampler")
    steps = cfg.int8_calibration_steps or cfg.default_steps or DEFAULT_TEACHER_STEPS
    guidance = cfg.guidance if cfg.guidance is not None else float(model.card.default_guidance)
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps)
    plan = calibration_plan(len(prompts := _prompts(cfg)), len(scheduler.timesteps), cfg.int8_subset_size)
    prompts = prompts[: plan.prompts]
    shape = latent_shape(model, shapes.frames, shapes.height, shapes.width)
    x = initial_noise(shape, cfg.seed + 1000, len(prompts)) * scheduler.init_noise_sigma
    cond, uncond = encode_text(model, prompts), encode_text(model, [""] * len(prompts))
    metered = MeteredUNet(model.unet, plan)
    denoiser = dataclasses.replace(model, denoiser=metered)
    per_prompt: list[CalibrationFeeds] = []

    def recording_unet(sample: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        per_prompt[-1].append({
            "sample": sample.numpy().astype(np.float32),
            "timestep": t.float().numpy().astype(np.float32),
            "encoder_hidden_states": text.numpy().astype(np.float32),
        })
        return denoiser.denoise(sample, t, text)

    try:
        with torch.no_grad():
            for i in range(len(prompts)):
                per_prompt.append([])
                ddim_cfg_sample(recording_unet, scheduler, x[i : i + 1], cond[i : i + 1], uncond[i : i + 1], guidance)
    finally:
        metered.close()
    return _timestep_major(per_prompt, plan.samples)


@register_calibration("consistency")
def student_calibration(model: Any, cfg: Any, shapes: Any, input_names: tuple[str, ...]) -> CalibrationFeeds:
    """UNet inputs along the student's own multistep consistency trajectory at the bundle's step count
    (``int8_calibration_steps``, else ``default_steps``, else the card's), one input per clip and step, batch 1 as
    the runtime calls it for one prompt, on training prompts. The final latents are not decoded."""
    import dataclasses

    from turbo_edge.core.student_sampling import sampler_contract, student_latents, student_timesteps

    steps = cfg.int8_calibration_steps or cfg.default_steps or model.card.default_steps
    plan = calibration_plan(len(prompts := _prompts(cfg)), len(student_timesteps(sampler_contract(model), steps)), cfg.int8_subset_size)
    metered = MeteredUNet(model.unet, plan)
    feeds: CalibrationFeeds = []
    try:
        for _ in student_latents(dataclasses.replace(model, denoiser=metered), prompts[: plan.prompts], steps=steps, guidance=cfg.guidance,
                                 seed=cfg.seed + 1000, batch_size=1, video_size=(shapes.frames, shapes.height, shapes.width), record=feeds.append):
            pass
    finally:
        metered.close()
    missing = [n for n in input_names if n not in feeds[0]]
    if missing:
        raise ValueError(f"the student's UNet graph takes inputs {missing} that its sampler does not feed")
    per_prompt = [feeds[i : i + plan.timesteps] for i in range(0, len(feeds), plan.timesteps)]
    return [{n: f[n] for n in input_names} for f in _timestep_major(per_prompt, plan.samples)]


def decoder_calibration(model: Any, cfg: Any, shapes: Any, sampler: Any) -> CalibrationFeeds:
    """A decoder variant's int8 calibration inputs: the final latents of the bundle's own sampler (``sampler``, the
    contract export writes) at its default steps, one clip per calibration prompt, as ``{"latent": [1, C, F, h, w]}``."""
    import torch

    from turbo_edge.core.sampling import ddim_cfg_sample, encode_text, initial_noise, latent_shape, sampling_scheduler
    from turbo_edge.core.student_sampling import student_latents

    prompts = _prompts(cfg)[: cfg.int8_calibration_prompts]
    size = (shapes.frames, shapes.height, shapes.width)
    if sampler.kind == "consistency":
        latents = torch.cat(list(student_latents(model, prompts, steps=sampler.default_steps, guidance=cfg.guidance, seed=cfg.seed + 2000,
                                                 batch_size=4, video_size=size)))
    else:
        scheduler = sampling_scheduler(model, sampler.default_steps)
        x = initial_noise(latent_shape(model, *size), cfg.seed + 2000, len(prompts)) * getattr(scheduler, "init_noise_sigma", 1.0)
        with torch.no_grad():
            latents = ddim_cfg_sample(model.denoise, scheduler, x, encode_text(model, prompts), encode_text(model, [""] * len(prompts)),
                                      sampler.guidance)
    return [{"latent": z[None].numpy().astype(np.float32)} for z in latents]


def ignored_scope(node_names: Iterable[str], op_types: Iterable[str], patterns: tuple[str, ...], types: tuple[str, ...]) -> Any:
    """NNCF's ignored scope for one graph (ONNX nodes or OpenVINO ops alike): only the patterns and op types that
    occur in it, since the defaults name diffusers modules a pruned UNet may lack; None when nothing is left."""
    import re

    import nncf

    names, present = list(node_names), set(op_types)
    matched = [p for p in patterns if any(re.fullmatch(p, name) for name in names)]
    kept = [t for t in types if t in present]
    return nncf.IgnoredScope(patterns=matched, types=kept, validate=False) if matched or kept else None


@dataclass(frozen=True)
class Int8Options:
    """What NNCF is asked, the same for both int8 formats. ``overflow_fix`` is NNCF's: "enable" keeps every weight in 7
    bits, for CPUs without VNNI (see ExportConfig). ``ignored_types`` are op types left in fp32, matched against ONNX
    ops or OpenVINO ops (ONNX's Gemm is a MatMul there, so ``INT8_SCOPES["conv"]`` means the same in both)."""

    model_type: str = "transformer"
    ignored_patterns: tuple[str, ...] = ()
    ignored_types: tuple[str, ...] = ()
    subset_size: int = 300
    fast_bias_correction: bool = True
    bias_correction: bool = True
    overflow_fix: str = "first_layer"

    @classmethod
    def from_config(cls, cfg: Any) -> Int8Options:
        """An ExportConfig's ``int8_*`` fields (its scope and overflow fix already resolved)."""
        return cls(model_type=cfg.int8_model_type, ignored_patterns=tuple(cfg.int8_ignored_patterns), ignored_types=INT8_SCOPES[cfg.int8_scope],
                   subset_size=cfg.int8_subset_size, fast_bias_correction=cfg.int8_fast_bias_correction,
                   bias_correction=cfg.int8_bias_correction, overflow_fix=cfg.int8_overflow_fix)

    def nncf_kwargs(self, feeds: CalibrationFeeds, names: Iterable[str], op_types: Iterable[str]) -> dict[str, Any]:
        """``nncf.quantize`` keyword arguments for a graph of these node names and op types."""
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

        if not feeds:
            raise ValueError("int8 calibration got no inputs")
        kwargs: dict[str, Any] = {
            "subset_size": min(self.subset_size, len(feeds)),
            "fast_bias_correction": self.fast_bias_correction,
            "ignored_scope": ignored_scope(names, op_types, self.ignored_patterns, self.ignored_types),
            "advanced_parameters": AdvancedQuantizationParameters(
                overflow_fix={"enable": OverflowFix.ENABLE, "first_layer": OverflowFix.FIRST_LAYER, "disable": OverflowFix.DISABLE}[self.overflow_fix],
                # Bias correction runs the model once per biased layer: the likely bulk of NNCF time on a UNet (not profiled).
                disable_bias_correction=not self.bias_correction,
            ),
        }
        if self.model_type == "transformer":
            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        return kwargs


@contextlib.contextmanager
def _producer_map_built_once() -> Iterator[None]:
    """NNCF 3.4's ONNX backend, classifying each Gather / MatMul while it builds its graph, rebuilds the whole graph's
    edge -> producer map per node (``onnx_metatypes._is_embedding``): quadratic in the node count, 72 of 230 s of a
    tiny UNet's 8,500-node int8 export. While NNCF runs, that one call site reads a map built once per graph state
    (keyed by the model object, its node count and its first and last nodes' names and outputs, so a graph NNCF has edited gets a new map)."""
    try:
        from nncf.onnx.graph.metatypes import onnx_metatypes as mt
    except ImportError:
        mt = None
    original = getattr(mt, "get_parents_node_mapping", None)
    if original is None:  # NNCF absent, or a later NNCF without the call site: nothing to do
        yield
        return
    cache: dict[tuple[int, int, str, str], Any] = {}

    def once(model: Any) -> Any:
        nodes = model.graph.node
        ends = (nodes[0].name + "|" + ",".join(nodes[0].output), nodes[-1].name + "|" + ",".join(nodes[-1].output)) if len(nodes) else ("", "")
        key = (id(model), len(nodes), *ends)
        if key not in cache:
            cache.clear()
            cache[key] = (model, original(model))  # the model kept alive, so its id is not reused while cached
        return cache[key][1]

    mt.get_parents_node_mapping = once
    try:
        yield
    finally:
        mt.get_parents_node_mapping = original


def quantize_int8(src: Path, dst: Path, feeds: CalibrationFeeds, options: Int8Options = Int8Options(),
                  external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """NNCF post-training quantization of an fp32 ONNX graph to QuantizeLinear/DequantizeLinear pairs."""
    import nncf
    import onnx

    logs.quiet_nncf()
    model = onnx.load(str(src))
    nodes = model.graph.node
    kwargs = options.nncf_kwargs(feeds, (n.name for n in nodes), (n.op_type for n in nodes))
    start = time.perf_counter()
    with _producer_map_built_once():
        quantized = nncf.quantize(model, nncf.Dataset(feeds), **kwargs)
    n_q = sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear")
    log.info("int8: %d QuantizeLinear nodes from %d calibration inputs (%s), NNCF %.0f s", n_q, len(feeds), options.model_type, time.perf_counter() - start)
    return save_model(quantized, dst, external_data_threshold)


def quantize_int8_openvino(src: Path, dst: Path, feeds: CalibrationFeeds, options: Int8Options = Int8Options()) -> list[Path]:
    """NNCF post-training quantization of an fp32 ONNX graph read into OpenVINO (NNCF's OpenVINO backend), written as
    OpenVINO IR with int8 weights: ``dst`` (.xml) and its .bin.

    For UNets too large for ``quantize_int8``: NNCF's ONNX backend holds the graph ~4 times over and was killed at
    22 GB on ModelScope T2V's 3.6-5.4 GB graph; this route peaked at 14.7 GB (benchmarks/bench_real_shape.py). The
    shapes stay as exported (dynamic batch and frames): the runtime's OpenVINO backend reshapes per call shape.
    """
    import nncf
    import openvino as ov

    if dst.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR graph is an .xml file (its weights the .bin beside it), got {dst}")
    logs.quiet_nncf()
    model = ov.Core().read_model(str(src))
    ops = model.get_ops()
    kwargs = options.nncf_kwargs(feeds, (op.get_friendly_name() for op in ops), (op.get_type_name() for op in ops))
    start = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(feeds), **kwargs)
    n_q = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    log.info("int8 (OpenVINO IR): %d FakeQuantize ops from %d calibration inputs (%s), NNCF %.0f s", n_q, len(feeds), options.model_type,
             time.perf_counter() - start)
    del model
    ov.save_model(quantized, str(dst), compress_to_fp16=False)  # int8 weights stay int8; the rest stays fp32
    return [dst, dst.with_suffix(".bin")]


def count_ops(path: Path, op_type: str) -> int:
    import onnx

    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == op_type)
