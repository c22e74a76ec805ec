"""TensorRT engines from a bundle's fp16 / int8 ONNX graphs (GPU machines only).

Strongly typed networks: the precision lives in the graph (fp16 weights, Q/DQ pairs), as TensorRT 10/11
expect after dropping the FP16/INT8 builder flags and calibrators. One optimisation profile per component
from the manifest's min/opt/max, a timing cache reused between builds (dev only: it is per GPU and
TensorRT version, so its name encodes both), and engine names that encode what produced them.

``tensorrt`` is imported only inside ``load_tensorrt``; everything else takes the module as an argument so
the profile, naming and config logic is unit-tested on CPU with a fake module.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from turbo_edge.spec import bundle as schema
from turbo_edge.spec.bundle import ENGINE_DIR
from turbo_edge.spec.configs import EngineConfig

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "TensorRT engines need an NVIDIA GPU with the TensorRT Python package: "
    "pip install 'turbo-edge[gpu]' (tensorrt>=10, downloaded from NVIDIA's index: "
    "pip install --extra-index-url https://pypi.nvidia.com tensorrt), or use the bundle's ONNX graphs with "
    "ONNX Runtime / OpenVINO instead"
)


class TensorRTUnavailable(RuntimeError):
    """No TensorRT Python package or no CUDA GPU on this machine."""


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]


def load_tensorrt() -> Any:
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: bindings present but libnvinfer / libnvonnxparser missing
        raise TensorRTUnavailable(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return tensorrt


def detect_gpu() -> GpuInfo:
    try:
        import torch
    except ImportError as exc:
        raise TensorRTUnavailable(INSTALL_HINT) from exc
    if not torch.cuda.is_available():
        raise TensorRTUnavailable(f"no CUDA GPU visible to this process. {INSTALL_HINT}")
    return GpuInfo(torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)))  # type: ignore[arg-type]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def shape_tag(profile: dict[str, dict[str, list[int]]]) -> str:
    """Compact, stable text of a profile: each input's min/opt/max joined, e.g. ``sample-1x4x1x8x8_2x4x8x8x8_...``."""
    parts = []
    for name in sorted(profile["opt"]):
        dims = ["x".join(str(d) for d in profile[p][name]) for p in ("min", "opt", "max")]
        parts.append(f"{name}-{'_'.join(dims)}")
    return "__".join(parts)


def engine_name(component: str, precision: str, trt_version: str, gpu: GpuInfo, profile: dict[str, dict[str, list[int]]]) -> str:
    """``unet.fp16.trt10.8.0.sm89.nvidia-geforce-rtx-4090.<shapes-hash>.plan``: everything that makes an engine
    unusable elsewhere is in its name, so a stale engine is never loaded (TensorRT #2072: version mismatch)."""
    import hashlib

    digest = hashlib.sha256(shape_tag(profile).encode()).hexdigest()[:10]
    sm = f"sm{gpu.compute_capability[0]}{gpu.compute_capability[1]}"
    return f"{component}.{precision}.trt{trt_version}.{sm}.{_slug(gpu.name)}.{digest}.plan"


def timing_cache_name(trt_version: str, gpu: GpuInfo) -> str:
    return f"timing.trt{trt_version}.sm{gpu.compute_capability[0]}{gpu.compute_capability[1]}.{_slug(gpu.name)}.cache"


def make_profile(trt: Any, builder: Any, profile: dict[str, dict[str, list[int]]]) -> Any:
    """One optimisation profile from a manifest component's min/opt/max shapes."""
    opt_profile = builder.create_optimization_profile()
    for name in profile["opt"]:
        opt_profile.set_shape(name, tuple(profile["min"][name]), tuple(profile["opt"][name]), tuple(profile["max"][name]))
    return opt_profile


def configure(trt: Any, builder: Any, cfg: EngineConfig, profile: dict[str, dict[str, list[int]]], cache_bytes: bytes) -> tuple[Any, Any]:
    """Builder config: workspace, optimisation level, the profile, a timing cache. No precision flags: the
    network is strongly typed. Returns (config, timing_cache)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gb * (1 << 30)))
    config.builder_optimization_level = cfg.optimization_level
    config.add_optimization_profile(make_profile(trt, builder, profile))
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return config, cache


def build_engine(trt: Any, onnx_path: Path, plan_path: Path, profile: dict[str, dict[str, list[int]]], cfg: EngineConfig, cache_path: Path) -> Path:
    """Parse ``onnx_path`` into a strongly typed network, build with ``profile``, write ``plan_path``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    config, cache = configure(trt, builder, cfg, profile, cache_bytes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(cache.serialize()))
    return plan_path


def engine_precision(component: str, entry: dict[str, Any], precision: str) -> str | None:
    """The graph an engine for ``component`` at ``precision`` is built from, as the runtime picks it
    (``spec.bundle.Bundle.engine_path``): that precision's graph; else, for every component but the UNet, its fp32 graph
    (a DiT bundle's fp16 is the transformer's alone: its UMT5 and causal decoder stay fp32, ``export.dit.FP16_COMPONENTS``);
    None when there is nothing to build."""
    if precision in entry["files"]:
        return precision
    if component != "unet" and "fp32" in entry["files"]:
        return "fp32"
    return None


def plan_builds(manifest: dict[str, Any], cfg: EngineConfig, trt_version: str, gpu: GpuInfo) -> list[dict[str, Any]]:
    """What to build: (component, precision, onnx file, engine file, profile) for each graph the runtime will ask for at
    ``cfg.precisions`` (``engine_precision``), each once; for ``cfg.components``, or else every graph the bundle has,
    so a bundle's decoder variants (``export --decoder full,tiny``) get engines for ``--decoder`` to choose."""
    builds = []
    components = list(cfg.components or manifest["components"])
    if "vae_decoder" in components and schema.DECODER_FIRST_STEP in manifest["components"] and schema.DECODER_FIRST_STEP not in components:
        components.insert(components.index("vae_decoder"), schema.DECODER_FIRST_STEP)  # a "steps" decoder's first graph goes with it
    for component in components:
        entry = manifest["components"].get(component)
        if entry is None:
            raise ValueError(f"the bundle has no {component} component (it has {sorted(manifest['components'])})")
        for wanted in cfg.precisions:
            precision = engine_precision(component, entry, wanted)
            if precision is None:
                log.info("no %s %s graph in the bundle; skipping its engine", component, wanted)
                continue
            if precision != wanted:
                log.info("no %s %s graph in the bundle: its engine is built from the %s graph, which the runtime runs at %s",
                         component, wanted, precision, wanted)
            if any(b["component"] == component and b["precision"] == precision for b in builds):
                continue
            onnx_file = entry["files"][precision]
            if schema.variant_format(entry, precision) != "onnx":
                raise ValueError(f"the bundle's {precision} {component} is OpenVINO IR ({onnx_file}), which TensorRT cannot build from; "
                                 f"re-export with `--set int8_format=qdq`, or run it with `--backend openvino`")
            builds.append({
                "component": component, "precision": precision, "onnx": onnx_file,
                "engine": f"{ENGINE_DIR}/{engine_name(component, precision, trt_version, gpu, entry['profile'])}",
                "profile": entry["profile"],
            })
    return builds


def build_engines(bundle: str | Path, cfg: EngineConfig | None = None, trt: Any = None,
                  gpu: GpuInfo | None = None, dry_run: bool = False) -> list[Path]:
    """Build TensorRT engines for a verified bundle and record them in its manifest (``engines`` + file hashes).

    ``trt`` and ``gpu`` are injectable for tests; by default TensorRT is imported and the GPU queried, and a
    machine without either fails with ``TensorRTUnavailable`` saying what to install. ``dry_run`` returns the
    engine paths that would be built. Engines already present (same name = same inputs) are reused.
    """
    root = Path(bundle)
    cfg = cfg or EngineConfig(bundle=str(root))
    manifest = schema.verify_bundle(root)
    trt = trt if trt is not None else load_tensorrt()
    gpu = gpu if gpu is not None else detect_gpu()
    builds = plan_builds(manifest, cfg, str(trt.__version__), gpu)
    paths = [root / b["engine"] for b in builds]
    if dry_run:
        return paths
    cache_path = Path(cfg.timing_cache) if cfg.timing_cache else root / ENGINE_DIR / timing_cache_name(str(trt.__version__), gpu)
    for b, plan in zip(builds, paths):
        if plan.is_file():
            log.info("reusing engine %s", plan.name)
            continue
        log.info("building %s from %s", plan.name, b["onnx"])
        build_engine(trt, root / b["onnx"], plan, b["profile"], cfg, cache_path)
    engines = manifest.get("engines", {})
    for b in builds:
        engines.setdefault(b["component"], {})[b["precision"]] = {
            "file": b["engine"], "tensorrt_version": str(trt.__version__), "gpu": gpu.name,
            "compute_capability": list(gpu.compute_capability),
        }
    schema.write_manifest(root, {**manifest, "engines": engines})  # engines and timing cache join the hashed files
    return paths
