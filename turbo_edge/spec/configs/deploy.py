"""The deployment configs: export a bundle, build TensorRT engines, verify, convert weights, run the runtime.
Torch-free."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from turbo_edge.spec.backends import BACKENDS
from turbo_edge.spec.bundle import COMPONENTS, DECODER_FIRST_STEP, DECODER_NAME_CHARS, FULL_DECODER, PRECISIONS, decoder_component
from turbo_edge.spec.config import StageConfig, opt
from turbo_edge.spec.configs.train import csv, csv_ints
from turbo_edge.spec.host import host_int8_scope, host_overflow_fix
from turbo_edge.spec.inputs import check_threads

# Fields that change how an export runs but not what it produces: left out of the config hash.
NOT_HASHED = ("out", "overwrite", "threads", "openvino_check", "prompts", "data")
OVERFLOW_FIXES = ("auto", "enable", "first_layer", "disable")
# What int8 quantizes: every op NNCF's preset picks, or convolutions only (MatMul/Gemm kept fp32: on a CPU
# without int8 dot products, OpenVINO runs quantized matmuls through a slow int8 GEMM and the Q/DQ nodes break
# its fp32 attention fusions; docs/decisions.md, benchmarks/results/int8_scope_*.json).
INT8_SCOPES: dict[str, tuple[str, ...]] = {"all": (), "conv": ("MatMul", "Gemm")}
INT8_SCOPE_CHOICES = ("auto", *INT8_SCOPES)
WEIGHT_DTYPES = ("float16", "bfloat16", "float32")
# How the int8 UNet is written: Q/DQ ONNX (NNCF's ONNX backend; every runtime reads it) or OpenVINO IR with int8
# weights (NNCF's OpenVINO backend; the openvino backend only). "auto" picks by the fp32 UNet graph's bytes, at
# export once that graph is written (export.bundle.resolve_int8_format), so the config beside the bundle names it.
INT8_FORMATS = ("auto", "qdq", "openvino")
# Above this fp32 UNet graph size, "auto" writes OpenVINO IR: protobuf's 2 GiB limit, past which the graph needs
# external data. NNCF's ONNX backend holds the graph ~4 times over (the model, its copy with statistics outputs, an
# ONNX Runtime session over that copy): under 2 GiB that is < 8 GB; ModelScope T2V's 3.6-5.4 GB graph went past
# 22 GB and was killed on a 24 GB machine, where the OpenVINO route peaked at 14.7 GB (bench_real_shape).
INT8_QDQ_MAX_BYTES = 2**31


def check_decoder_name(name: str | None) -> None:
    """A decoder's name as a bundle and a model card spell it: full, tiny, pruned (lower-case letters, digits, _)."""
    if name is not None and (not isinstance(name, str) or not name or not set(name) <= DECODER_NAME_CHARS):
        raise ValueError(f"a decoder is named like full, tiny or pruned (lower-case letters, digits, _), got {name!r}")
    if name is not None and decoder_component(name) == DECODER_FIRST_STEP:
        raise ValueError(f"a decoder may not be named {name!r}: its component {DECODER_FIRST_STEP} is the full decoder's first step")


@dataclasses.dataclass
class ExportConfig(StageConfig):
    KIND = "export"

    model: str = opt("builtin", help="builtin, builtin-student, builtin-pruned or a diffusers text-to-video directory")
    out: str = opt("bundles/builtin", help="bundle directory to write")
    overwrite: bool = opt(False, help="replace an existing output of the same kind turbo-edge wrote (kept until the new one is complete)")
    precisions: tuple[str, ...] = opt(("fp32", "fp16", "int8"), flag="--precision", parse=csv, help="comma-separated subset of fp32,fp16,int8 (fp32 always)")
    components: tuple[str, ...] = opt(COMPONENTS, parse=csv)
    fp16_components: tuple[str, ...] = opt(COMPONENTS, parse=csv)  # the tiny text encoder and decoder cost nothing to convert
    # Pixel video size the bundle serves; None: the model's own (its card's frames, VAE sample_size).
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    max_batch: int = opt(2, help="prompts per call the bundle's profile allows (the UNet's max batch is twice this under CFG)")
    min_frames: int = opt(1, help="the shortest clip the bundle serves (a UNet's frames axis; a Wan bundle with --max-frames: every 1 + 4k "
                                  "length from min to max, its causal decoder exported as step graphs)")
    max_frames: int | None = opt(None, help="the longest clip the bundle serves; default: --frames (a Wan bundle: that one length)")
    static: bool = opt(False, help="fix every axis at its opt value (TensorRT engines and CUDA graphs prefer it)")
    dynamic_spatial: bool = False
    opset: int = 17
    external_data_threshold: int = 2**31 - 2**26
    # The sampler contract written to the manifest: None keeps the model card's (a teacher: 50-step DDIM + CFG).
    default_steps: int | None = None
    supported_steps: tuple[int, ...] | None = opt(None, parse=csv_ints)
    guidance: float | None = None
    # Tolerances: None keeps contracts.DEFAULT_TOLERANCE.
    tolerance_fp32: float | None = None
    tolerance_fp16: float | None = None
    tolerance_int8: float | None = None  # on mean relative error
    # int8 (NNCF post-training quantization of the UNet to Q/DQ).
    int8_model_type: str = opt("transformer", choices=("transformer", "default"), help="NNCF preset: transformer (matmuls only, accurate) or default (also convolutions: faster on wide UNets)")
    int8_ignored_patterns: tuple[str, ...] = (r".*time_embedding.*", r".*time_proj.*", r".*conv_in.*", r".*conv_out.*")
    # "auto": host_int8_scope() ("conv" on a CPU without int8 dot products, else "all"), resolved when the config
    # is made like int8_overflow_fix, so the config beside the bundle names the scope used; or a key of INT8_SCOPES.
    int8_scope: str = opt("auto", choices=INT8_SCOPE_CHOICES, help="int8 quantizes every op the preset picks (all) or convolutions only (conv); auto: conv on an exporting CPU without VNNI / AMX int8, else all")
    int8_format: str = opt("auto", choices=INT8_FORMATS, help="int8 UNet as Q/DQ ONNX (qdq: every backend) or OpenVINO IR (openvino: the openvino backend, "
                                                                "for UNets too large for NNCF's ONNX backend); auto: openvino when the fp32 UNet graph is over 2 GiB")
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
    int8_overflow_fix: str = opt("auto", choices=OVERFLOW_FIXES)
    seed: int = 0
    threads: int = opt(1, help="ORT intra-op / OpenVINO / torch threads for the parity checks")
    openvino_check: bool = True  # measure OpenVINO fp32/bf16/int8 accuracy into parity.json
    # int8 calibration prompts: a text file (one per line) or a prepared dataset's captions, resolved at export into
    # int8_calibration_prompt_list (empty: the world's training prompts); the list, not the paths, is hashed.
    prompts: str | None = opt(None, help="int8 calibration prompts from a text file, one per line (# comments)")
    data: str | None = opt(None, help="int8 calibration prompts from a prepared dataset's captions (int8_calibration_prompts of them)")
    int8_calibration_prompt_list: tuple[str, ...] = opt((), cli=False, help="the resolved calibration prompts (set by --prompts / --data)")
    # The decoders the bundle carries, the first its default: "full" (the VAE's) and the variants the model's card names
    # (`turbo-edge decoder train`: tiny, pruned), each its own graph (vae_decoder_NAME), int8 where its gate holds.
    decoders: tuple[str, ...] = opt(("full",), flag="--decoder", parse=csv,
                                    help="comma-separated decoders to export, the first the bundle's default: full and the model's variants (e.g. full,tiny)")

    def __post_init__(self) -> None:
        if not self.decoders or len(set(self.decoders)) != len(self.decoders):
            raise ValueError(f"--decoder must name each decoder once (e.g. full,tiny), got {list(self.decoders)}")
        for name in self.decoders:
            check_decoder_name(name)
        if self.prompts and self.data:
            raise ValueError("int8 calibration prompts come from --prompts FILE or --data DATA, not both")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or "fp32" not in self.precisions:
            raise ValueError(f"precisions must include fp32 and be among {PRECISIONS}, got {list(self.precisions)}")
        unknown = [c for c in (*self.components, *self.fp16_components) if c not in COMPONENTS]
        if unknown:
            raise ValueError(f"unknown component(s) {unknown}; exportable: {list(COMPONENTS)}")
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
        if self.int8_format not in INT8_FORMATS:
            raise ValueError(f"int8_format must be one of {list(INT8_FORMATS)}, got {self.int8_format!r}")
        if self.int8_model_type not in ("transformer", "default"):
            raise ValueError(f"int8_model_type must be 'transformer' or 'default', got {self.int8_model_type!r}")

    def content_hash(self) -> str:
        """Hash of the fields that shape the artifacts (not the output path or thread count)."""
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        if not data["int8_calibration_prompt_list"]:  # the world's prompts: the hash bundles made before the field had
            data.pop("int8_calibration_prompt_list")
        if data["int8_format"] == "auto":  # likewise: the hash of bundles made before the field
            data.pop("int8_format")
        if list(data["decoders"]) == [FULL_DECODER]:  # likewise: the hash of bundles made before decoder variants
            data.pop("decoders")
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def tolerances(self) -> dict[str, float | None]:
        return {"fp32": self.tolerance_fp32, "fp16": self.tolerance_fp16, "int8": self.tolerance_int8}


@dataclasses.dataclass
class EngineConfig(StageConfig):
    KIND = "engine"

    bundle: str = opt("", help="a bundle directory written by `turbo-edge export`")
    precisions: tuple[str, ...] = opt(("fp16",), flag="--precision", parse=csv, help="graphs to build engines from: fp16 (default), int8, fp32; a component without that graph gets its fp32 graph's engine, as the runtime runs it (the UNet never falls back)")
    components: tuple[str, ...] = opt((), parse=csv, help="graphs to build engines for (default: every graph the bundle has, its decoder variants included)")
    workspace_gb: float = opt(4.0)
    optimization_level: int = opt(3)
    timing_cache: str | None = opt(None, help="default: <bundle>/engines/timing_<trt>_<gpu>.cache")

    def __post_init__(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ValueError(f"unknown precision(s) {bad}; engines build from fp32, fp16 or int8 graphs")
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"optimization_level must be in 0..5, got {self.optimization_level}")
        if self.workspace_gb <= 0:
            raise ValueError("workspace_gb must be positive")


@dataclasses.dataclass
class VerifyConfig(StageConfig):
    KIND = "verify"

    bundle: str = opt("", positional=True, help="a bundle directory")

    def __post_init__(self) -> None:
        if not self.bundle:
            raise ValueError("give the bundle directory to verify")


@dataclasses.dataclass
class ConvertConfig(StageConfig):
    KIND = "convert"

    model: str = opt("", help="alias or model directory")
    out: str = opt("", help="new directory for the converted copy")
    overwrite: bool = opt(False, help="replace an existing output of the same kind turbo-edge wrote (kept until the new one is complete)")
    dtype: str = opt("float16", choices=WEIGHT_DTYPES, help="float16 (default: half the bytes), bfloat16 or float32")
    decoders_from: str | None = opt(None, help="a model directory whose decoder variants (e.g. a student's tiny_vae/) the copy gains "
                                               "with their card entries; refused unless it holds the same autoencoder")
    replace_decoders: bool = opt(False, help="with --decoders-from: its variants replace the model's variants of the same name "
                                             "(folder and card entry); without it such a clash is refused")
    only_decoders: tuple[str, ...] = opt((), parse=csv, help="with --decoders-from: comma-separated names of its variants to take (default: all)")

    def __post_init__(self) -> None:
        if not self.model or not self.out:
            raise ValueError("give --model (alias or directory) and --out (a new directory)")
        if self.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"--dtype must be one of {WEIGHT_DTYPES}, got {self.dtype!r}")
        if (self.replace_decoders or self.only_decoders) and not self.decoders_from:
            raise ValueError("--replace-decoders / --only-decoders choose among the decoder variants of --decoders-from DIR: give it too")


@dataclasses.dataclass
class RuntimeConfig(StageConfig):
    KIND = "runtime"

    bundle: str = ""
    backend: str = opt("ort-cpu", choices=tuple(BACKENDS))
    precision: str = opt("fp32", choices=PRECISIONS, help="per component where the bundle has that variant (int8: the UNet only), else fp32")
    threads: int = opt(1, help="per session: ORT intra-op threads / OpenVINO INFERENCE_NUM_THREADS")
    verify: bool = opt(True, help="check every file's sha256 against the manifest at load")
    text_cache_size: int = opt(64, help="prompts whose text-encoder output is kept (LRU)")
    decoder: str | None = opt(None, help="which of the bundle's decoders turns latents into frames (full, tiny, ...); default: the bundle's default")

    def __post_init__(self) -> None:
        check_decoder_name(self.decoder)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {sorted(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        check_threads(self.threads)
        if self.text_cache_size < 0:
            raise ValueError(f"text_cache_size must be >= 0, got {self.text_cache_size}")
