"""``ExportConfig``: everything that decides what a bundle contains (its hash names the bundle's artifacts)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from turbo_edge.core.config import StageConfig
from turbo_edge.export.contracts import PRECISIONS

COMPONENT_NAMES = ("text_encoder", "unet", "vae_decoder")
# Fields that change how an export runs but not what it produces: left out of the config hash.
NOT_HASHED = ("out", "threads", "openvino_check")


OVERFLOW_FIXES = ("auto", "enable", "first_layer", "disable")
# What int8 quantizes: every op NNCF's preset picks, or convolutions only (MatMul/Gemm kept fp32: on a CPU
# without int8 dot products, OpenVINO runs quantized matmuls through a slow int8 GEMM and the Q/DQ nodes break
# its fp32 attention fusions; benchmarks/results/int8_scope_avx2.json and
# int8_scope_vnni.json measure both).
INT8_SCOPES: dict[str, tuple[str, ...]] = {"all": (), "conv": ("MatMul", "Gemm")}
INT8_SCOPE_CHOICES = ("auto", *INT8_SCOPES)
# /proc/cpuinfo flags of x86 int8 dot-product instructions with 32-bit accumulation (no 16-bit saturation).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def host_int8_dot_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The INT8_DOT_FLAGS this machine's CPU has (``cpuinfo``: /proc/cpuinfo text, default this machine's);
    None where nothing is known (not x86 Linux: no flags line)."""
    from turbo_edge.runtime.cpu import cpu_flags

    flags = cpu_flags(cpuinfo)
    return None if flags is None else [f for f in INT8_DOT_FLAGS if f in flags]


def host_overflow_fix(cpuinfo: str | None = None) -> str:
    """NNCF overflow fix for int8 graphs run on this machine's CPU: "enable" without VNNI, else "first_layer"."""
    dot = host_int8_dot_flags(cpuinfo)
    if dot is None:
        return "first_layer"  # not x86 Linux (no flags line): NNCF's own default, nothing known about u8 x s8 saturation
    return "first_layer" if dot else "enable"


def host_int8_scope(cpuinfo: str | None = None) -> str:
    """What int8 should quantize for this machine's CPU: "conv" without int8 dot products (VNNI / AMX), else "all".

    Measured: on an AVX2-only EPYC (benchmarks/results/int8_scope_avx2.json) quantizing every op made OpenVINO's
    int8 UNet slower than fp32 (its int8 matmuls run a slow GEMM there); convolutions only made it 1.07-1.14x faster.
    On an AVX-512 VNNI EPYC (int8_scope_vnni.json) every op is the better choice: 1.11-1.18x with warm weights,
    convolutions only 1.03-1.04x. Quality stayed within a point of fp32 either way.
    """
    dot = host_int8_dot_flags(cpuinfo)
    if dot is None:
        return "all"  # not x86 Linux: nothing known, keep NNCF's preset
    return "all" if dot else "conv"


@dataclasses.dataclass
class ExportConfig(StageConfig):
    KIND = "export"

    model: str = "builtin"
    out: str = "bundles/builtin"
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    components: tuple[str, ...] = COMPONENT_NAMES
    fp16_components: tuple[str, ...] = COMPONENT_NAMES  # the tiny text encoder and decoder cost nothing to convert
    # Pixel video size the bundle serves; None: the model's own (meta "frames", VAE sample_size).
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    max_batch: int = 2  # prompts per call; the UNet profile's max batch is twice this under CFG
    min_frames: int = 1
    max_frames: int | None = None  # None: frames
    static: bool = False  # every axis fixed at its opt value (TensorRT engines and CUDA graphs prefer it)
    dynamic_spatial: bool = False
    opset: int = 17
    external_data_threshold: int = 2**31 - 2**26
    # Sampler contract written to the manifest (teachers; a student's turbo_edge.json overrides).
    default_steps: int | None = None  # None: meta "default_steps", else 50 (teacher) / 4 (student)
    supported_steps: tuple[int, ...] | None = None
    guidance: float | None = None  # None: meta "default_guidance", else 3.0
    # Tolerances: None keeps contracts.DEFAULT_TOLERANCE.
    tolerance_fp32: float | None = None
    tolerance_fp16: float | None = None
    tolerance_int8: float | None = None  # on mean relative error
    # int8 (NNCF post-training quantization of the UNet to Q/DQ).
    int8_model_type: str = "transformer"  # "transformer" | "default"
    int8_ignored_patterns: tuple[str, ...] = (r".*time_embedding.*", r".*time_proj.*", r".*conv_in.*", r".*conv_out.*")
    # "auto": host_int8_scope() ("conv" on a CPU without int8 dot products, else "all"), resolved when the config
    # is made like int8_overflow_fix, so the config beside the bundle names the scope used; or a key of INT8_SCOPES.
    int8_scope: str = "auto"
    int8_calibration_prompts: int = 8
    int8_calibration_steps: int | None = None  # None: default_steps (the bundle's own timesteps)
    int8_subset_size: int = 300
    int8_fast_bias_correction: bool = True
    int8_bias_correction: bool = True
    # NNCF's overflow fix (weights in 7 bits): x86 CPUs without VNNI run u8 x s8 int8 products through 16-bit
    # intermediates that saturate (vpmaddubsw), which ONNX Runtime / OpenVINO on such CPUs turn into large
    # errors. "auto": "enable" when the exporting CPU has no VNNI / AMX int8, else NNCF's default (first layer
    # only); resolved when the config is made, so the config written beside the bundle names what was used.
    # On this project's AVX2-only EPYC, the tiny UNet's int8 error was 0.26-0.28 mean relative without it.
    int8_overflow_fix: str = "auto"  # "auto" | "enable" | "first_layer" | "disable"
    seed: int = 0
    threads: int = 1  # ORT intra-op / OpenVINO / torch threads for parity checks
    openvino_check: bool = True  # measure OpenVINO fp32/bf16/int8 accuracy into parity.json

    def __post_init__(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or "fp32" not in self.precisions:
            raise ValueError(f"precisions must include fp32 and be among {PRECISIONS}, got {list(self.precisions)}")
        unknown = [c for c in (*self.components, *self.fp16_components) if c not in COMPONENT_NAMES]
        if unknown:
            raise ValueError(f"unknown component(s) {unknown}; exportable: {list(COMPONENT_NAMES)}")
        for name in ("frames", "height", "width", "max_frames", "default_steps", "int8_calibration_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_batch < 1 or self.min_frames < 1 or self.threads < 1:
            raise ValueError("max_batch, min_frames and threads must be >= 1")
        if self.max_frames is not None and self.frames is not None and not self.min_frames <= self.frames <= self.max_frames:
            raise ValueError(f"need min_frames <= frames <= max_frames, got {self.min_frames}, {self.frames}, {self.max_frames}")
        if self.static and self.dynamic_spatial:
            raise ValueError("static and dynamic_spatial exclude each other")
        if not 13 <= self.opset <= 20:
            raise ValueError(f"opset {self.opset} is outside the tested range 13..20 (17 is the default)")
        if self.int8_overflow_fix not in OVERFLOW_FIXES:
            raise ValueError(f"int8_overflow_fix must be one of {OVERFLOW_FIXES}, got {self.int8_overflow_fix!r}")
        if self.int8_overflow_fix == "auto":
            self.int8_overflow_fix = host_overflow_fix()
        if self.int8_scope not in INT8_SCOPE_CHOICES:
            raise ValueError(f"int8_scope must be one of {list(INT8_SCOPE_CHOICES)}, got {self.int8_scope!r}")
        if self.int8_scope == "auto":
            self.int8_scope = host_int8_scope()
        if self.int8_model_type not in ("transformer", "default"):
            raise ValueError(f"int8_model_type must be 'transformer' or 'default', got {self.int8_model_type!r}")

    def content_hash(self) -> str:
        """Hash of the fields that shape the artifacts (not the output path or thread count)."""
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def tolerances(self) -> dict[str, float | None]:
        return {"fp32": self.tolerance_fp32, "fp16": self.tolerance_fp16, "int8": self.tolerance_int8}
