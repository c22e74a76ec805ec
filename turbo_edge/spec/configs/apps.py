"""The apps' configs: generate, eval, demo, report, serve. Torch-free."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from turbo_edge.spec.backends import BACKENDS, GPU_BACKENDS
from turbo_edge.spec.bundle import PRECISIONS, is_bundle
from turbo_edge.spec.config import StageConfig, opt
from turbo_edge.spec.configs.deploy import check_decoder_name
from turbo_edge.spec.configs.train import csv
from turbo_edge.spec.inputs import (
    check_clip_size,
    check_guidance,
    check_prompt_text,
    check_scale,
    check_seed,
    check_threads,
    seed_arg,
)
from turbo_edge.spec.prompt_file import is_prompt_file

SPLITS = ("train", "val", "heldout")
CLIP_FORMATS = ("gif", "mp4")


@dataclasses.dataclass
class GenerateConfig(StageConfig):
    """One clip: from a model directory in PyTorch (teachers), or from a bundle through the torch-free runtime."""

    KIND = "generate"

    prompt: str = opt("", positional=True, help='e.g. "a red circle moving left"')
    model: str = opt("builtin", help="a teacher: builtin (default) or a diffusers text-to-video directory, run in PyTorch")
    bundle: str | None = opt(None, help="run an exported bundle with the torch-free runtime instead of --model")
    backend: str = opt("ort-cpu", choices=tuple(BACKENDS), help="bundles: runtime backend")
    precision: str = opt("fp32", choices=PRECISIONS, help="bundles: graph precision (int8: the UNet only)")
    threads: int = opt(1)
    steps: int | None = opt(None, help="sampler steps (default: the model card's, 50 for a teacher; the bundle's default_steps)")
    guidance: float | None = opt(None, help="default: the model's or bundle's own")
    seed: int = opt(0, parse=seed_arg)
    frames: int | None = opt(None, help="frames of the clip (default: the model card's, else the family's pipeline default; a bundle's own, "
                                        "or any length its profile serves: export --min-frames / --max-frames)")
    height: int | None = opt(None, help="frame height (default: the model card's, else the autoencoder's; a bundle's own)")
    width: int | None = opt(None, help="frame width (default: the height; a bundle's own)")
    out: str = opt("clip.gif", help="output .gif or .mp4")
    overwrite: bool = opt(False, help="replace an existing output of the same kind (a GIF or MP4 file)")
    scale: int = opt(4, help="nearest-neighbour upscaling of the written video")
    fps: int | None = opt(None, help="default: the bundle's video fps (8)")
    verify: bool = opt(True, help="bundles: check every file's sha256 before loading")
    decoder: str | None = opt(None, help="bundles: which of the bundle's decoders makes the frames (full, tiny, ...); default: the bundle's default")
    # Many prompts in one call (the model or bundle loads once): clip i of DIR is what `generate PROMPT_i` writes.
    prompts: str | None = opt(None, help="a text file of prompts, one per line (blank lines and # comments skipped): "
                                         "one clip per prompt, all with --seed, into the directory --out")
    clip_format: str = opt("gif", choices=CLIP_FORMATS, help="--prompts: the format of each clip in --out")

    def __post_init__(self) -> None:
        if self.prompts:
            if self.prompt:
                raise ValueError("give one prompt or --prompts FILE, not both")
            if self.out.lower().endswith((".gif", ".mp4")):
                raise ValueError(f"with --prompts, --out is a directory for the clips (e.g. --out clips), got {self.out!r}")
            if self.clip_format not in CLIP_FORMATS:
                raise ValueError(f"--clip-format must be one of {list(CLIP_FORMATS)}, got {self.clip_format!r}")
        else:
            check_prompt_text(self.prompt)
            if not self.out.lower().endswith((".gif", ".mp4")):
                raise ValueError(f"--out must end in .gif or .mp4, got {self.out!r}")
        check_seed(self.seed)
        check_guidance(self.guidance)
        check_threads(self.threads)
        check_scale(self.scale)
        check_decoder_name(self.decoder)
        if self.decoder is not None and not self.bundle:
            raise ValueError("--decoder chooses among a bundle's decoders (generate --bundle DIR); export the model with `--decoder full,NAME` first")
        check_clip_size(self.frames, self.height, self.width)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; choose one of {sorted(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown --precision {self.precision!r}; choose one of {list(PRECISIONS)}")


MAX_SERVE_BATCH = 64  # rows per Triton request: each row's clip is generated and held in the response
MAX_INSTANCES = 64  # model instances: each a stub process with its own runtime


@dataclasses.dataclass
class EvalConfig(StageConfig):
    KIND = "eval"

    model: str = opt("builtin", help="builtin, a model directory, a bundle directory (turbo-edge export), or groundtruth / noise (evaluator anchors)")
    steps: int | None = opt(None, help="sampler steps (default: the model's own: its card's or bundle's default_steps, 50 for a teacher)")
    guidance: float | None = opt(None, help="default: the model's own")
    frames: int | None = opt(None, help="model directories: frames of each clip (default: the model card's, else the family's)")
    height: int | None = opt(None, help="model directories: frame height (default: the model card's, else the autoencoder's)")
    width: int | None = opt(None, help="model directories: frame width (default: the height)")
    prompts: str = opt("val", help="a world split (train, val, heldout), or a prompt file: one prompt per line, blank lines and "
                                   "# comments skipped, one clip per prompt")
    num: int = opt(48, help="world splits: clips to generate (a prompt file gives one per prompt)")
    seed: int = opt(0)
    batch_size: int = opt(16)
    decoder: str = opt("full", help="decode with this decoder: a model directory's card variant (tiny from `turbo-edge decoder train`) "
                                    "or a bundle's (exported with `--decoder full,tiny`); full: the VAE's")
    json: str | None = opt(None, help="write the result here (a new file, or with --overwrite one an earlier eval / bench wrote)")
    overwrite: bool = opt(False, help="replace --json when it is a results file turbo-edge wrote (never any other file)")
    save_clips: str | None = opt(None, help="directory for one GIF per clip")
    # Bundles only (``model`` is a bundle directory): the runtime backend, precision and threads.
    backend: str = opt("ort-cpu", help="bundles: runtime backend (ort-cpu, openvino, ort-cuda, tensorrt)")
    precision: str = opt("fp32", help="bundles: fp32, fp16 or int8 (where the bundle has that graph)")
    threads: int | None = opt(None, help="bundles: runtime threads (default: every core)")
    # Beyond the world: scores from models the user names (never training rewards).
    clip: str | None = opt(None, help="a local CLIP model directory (transformers CLIPModel + processor, safetensors): "
                                      "text-frame similarity and frame consistency")
    fd_features: str | None = opt(None, help="a local transformers vision model directory (e.g. a CLIP vision tower): Fréchet "
                                             "distance of its pooled frame features against --reference")
    reference: str | None = opt(None, help="--fd-features reference: a prepared dataset (its source videos are decoded) or a folder of videos")
    reference_num: int = opt(512, help="at most this many reference videos")

    def is_prompt_file(self) -> bool:
        return is_prompt_file(self.prompts, SPLITS)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {sorted(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if (self.backend, self.precision) != ("ort-cpu", "fp32") and not is_bundle(self.model):
            raise ValueError(f"--backend / --precision choose how a bundle runs; {self.model!r} is not a bundle directory "
                             "(make one with `turbo-edge export`)")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        check_decoder_name(self.decoder)
        if self.decoder != "full" and self.model in ("groundtruth", "noise"):
            raise ValueError(f"--decoder {self.decoder} chooses a model's or bundle's decoder; {self.model!r} is an evaluator anchor")
        if self.prompts not in SPLITS and not self.is_prompt_file():
            raise ValueError(f"--prompts must be a split (train, val, heldout) or a prompt file (one prompt per line), got {self.prompts!r}")
        if (self.fd_features is None) != (self.reference is None):
            raise ValueError("--fd-features and --reference go together: the feature model and the clips (a prepared dataset or a "
                             "folder of videos) the Fréchet distance compares against")
        if self.reference_num < 2:
            raise ValueError(f"--reference-num must be >= 2, got {self.reference_num}")
        if self.num < 2:
            raise ValueError(f"--num must be >= 2 (the Fréchet distance needs a spread), got {self.num}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"--steps must be an integer >= 1, got {self.steps!r}")
        check_clip_size(self.frames, self.height, self.width)


DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores: the stages run briefly, the table measures the shipped models.
    "quick": {"distill_steps": 20, "prune_steps": 20, "batch": 4, "dataset_clips": 512, "num_prompts": 8,
              "calibration_prompts": 4},
    # Reproduces the shipped students' training length (hours on 2 CPU cores).
    "full": {"distill_steps": None, "prune_steps": None, "batch": None, "dataset_clips": None, "num_prompts": 48,
             "calibration_prompts": 8},
}


# The builtin chains the demo runs: teacher, student, pruned student.
DEMO_FAMILIES: dict[str, tuple[str, str, str]] = {"unet": ("builtin", "builtin-student", "builtin-pruned"),
                                                  "dit": ("builtin-dit", "builtin-dit-student", "builtin-dit-pruned")}


@dataclasses.dataclass
class DemoConfig(StageConfig):
    KIND = "demo"

    preset: str = opt("quick", choices=tuple(DEMO_PRESETS), help="quick (default, minutes on 2 cores) or full (reproduces the shipped students)")
    out: str = opt("build/demo", help="working directory; finished stages and rows are reused on a re-run")
    family: str = opt("unet", choices=tuple(DEMO_FAMILIES), help="the builtin chain the defaults name: unet (builtin, builtin-student, "
                                                                "builtin-pruned) or dit (builtin-dit, builtin-dit-student, builtin-dit-pruned)")
    teacher: str | None = opt(None, help="default: the family's builtin teacher")
    student: str | None = opt(None, help="used for the table when it exists; else the student this run distils (default: the family's)")
    pruned: str | None = opt(None, help="default: the family's builtin pruned student")
    teacher_steps: int = opt(50)
    student_steps: tuple[int, ...] = opt((1, 2, 4), parse=lambda v: tuple(int(x) for x in csv(v)))
    runtime_steps: int = opt(4)
    backends: tuple[str, ...] = opt(("ort-cpu", "openvino"), parse=csv, help="runtime backends, e.g. ort-cpu,openvino (GPU: ort-cuda,tensorrt)")
    precisions: tuple[str, ...] = opt(("fp32", "int8"), parse=csv, help="bundle precisions, e.g. fp32,int8 (GPU: fp32,fp16,int8)")
    num_prompts: int | None = opt(None, help="default: the preset's")
    distill_steps: int | None = opt(None, help="default: the preset's")
    prune_steps: int | None = opt(None, help="default: the preset's")
    threads: int = opt(2)
    seed: int = opt(0)
    clips_per_row: int = opt(3, help="GIFs kept per row for the report")

    def __post_init__(self) -> None:
        if self.family not in DEMO_FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; choose one of {sorted(DEMO_FAMILIES)}")
        if self.preset not in DEMO_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(DEMO_PRESETS)}")
        if self.teacher_steps < 1 or self.runtime_steps < 1 or not self.student_steps:
            raise ValueError("teacher_steps and runtime_steps must be >= 1 and student_steps non-empty")
        if "fp32" not in self.precisions:
            raise ValueError(f"precisions must include fp32 (the reference), got {list(self.precisions)}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; choose from {sorted(BACKENDS)}")
        if self.num_prompts is not None and self.num_prompts < 2:
            raise ValueError(f"num_prompts must be >= 2 (the evaluator's Fréchet distance needs a spread), got {self.num_prompts}")

    def setting(self, name: str) -> Any:
        value = getattr(self, name, None)
        return DEMO_PRESETS[self.preset][name] if value is None else value

    def model(self, role: str) -> str:
        """The teacher, student or pruned model the demo uses: the one named, else the family's builtin."""
        value = getattr(self, role)
        return value if value is not None else DEMO_FAMILIES[self.family][("teacher", "student", "pruned").index(role)]


@dataclasses.dataclass
class ReportConfig(StageConfig):
    KIND = "report"

    results: str = opt("benchmarks/results", help="directory of benchmark results *.json")
    clips: str | None = opt(None, help="directory with index.json and the GIFs it names (e.g. the demo's --out): shown side by side per prompt")
    out: str = opt("build/report", help="report directory: report.md, index.html, plots/, clips/")
    page: str | None = opt(None, help="also write the results page (docs/results.md) rendered from --results")

    def __post_init__(self) -> None:
        if not self.results or not self.out:
            raise ValueError("--results and --out must name directories")


MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclasses.dataclass
class ServeConfig(StageConfig):
    """A Triton Inference Server model repository over a bundle (Python backend, torch-free runtime), and the server.

    Verified here: the CPU backends (ort-cpu, openvino) on the tritonserver binary of the nvidia-pytriton wheel,
    over loopback. The GPU backends (ort-cuda, tensorrt) are written into the repository for NVIDIA's Triton
    containers (``--write-only``) and have never run on a GPU in this project.
    """

    KIND = "serve"

    bundle: str = opt("", help="a bundle directory written by `turbo-edge export`")
    backend: str = opt("ort-cpu", choices=tuple(BACKENDS), help="runtime backend of every model instance (ort-cuda / tensorrt: --write-only for a GPU host, unverified here)")
    precision: str = opt("fp32", choices=PRECISIONS, help="graph precision (int8: the UNet only)")
    threads: int = opt(1, help="runtime threads per model instance")
    instances: int = opt(1, help="model instances (each a process with its own runtime): parallel requests")
    max_batch: int = opt(4, help="rows per request, and per batch the dynamic batcher forms")
    batch_delay_us: int = opt(0, help="microseconds the dynamic batcher waits to merge requests into one model call (an instance runs "
                                      "the rows one after another, so a delay adds latency and saves only per-call overhead)")
    port: int = opt(8000, help="HTTP port; gRPC listens on PORT+1")
    address: str = opt("127.0.0.1", help="address the server listens on (0.0.0.0: every interface)")
    model_name: str = opt("turbo_edge", help="the model's name in the repository and in request URLs")
    repository: str = opt("build/serve", help="model repository directory to write (its NAME/ folder is replaced)")
    write_only: bool = opt(False, help="write the repository and exit, e.g. for NVIDIA's Triton containers on a GPU host (that GPU path is unverified here)")
    verify: bool = opt(True, help="check every bundle file's sha256 when the repository is written and when each instance loads")
    decoder: str | None = opt(None, help="which of the bundle's decoders every instance runs (full, tiny, ...); default: the bundle's default")
    ready_timeout: float = opt(180.0, help="seconds to wait for the server and every instance to be ready")

    def __post_init__(self) -> None:
        if not self.bundle:
            raise ValueError("give --bundle: a bundle directory written by `turbo-edge export`")
        check_decoder_name(self.decoder)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; choose one of {sorted(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown --precision {self.precision!r}; choose one of {list(PRECISIONS)}")
        check_threads(self.threads)
        for name, high in (("instances", MAX_INSTANCES), ("max_batch", MAX_SERVE_BATCH)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer in [1, {high}], got {value!r}"
                                 + (" (each row is a whole clip held in the request's memory)" if name == "max_batch" else ""))
        if isinstance(self.batch_delay_us, bool) or not isinstance(self.batch_delay_us, int) or not 0 <= self.batch_delay_us <= 10**7:
            raise ValueError(f"--batch-delay-us must be an integer in [0, 10000000], got {self.batch_delay_us!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65534:
            raise ValueError(f"--port must be in [1, 65534] (gRPC takes PORT+1), got {self.port!r}")
        if not MODEL_NAME.fullmatch(self.model_name):
            raise ValueError(f"--model-name must be 1-64 letters, digits, '_', '.' or '-' (not starting with '.' or '-'), got {self.model_name!r}")
        if not self.repository:
            raise ValueError("--repository must name a directory")
        if self.backend in GPU_BACKENDS and not self.write_only:
            raise ValueError(f"--backend {self.backend} is for a GPU host and is unverified here: add --write-only and serve the repository "
                             "with NVIDIA's Triton container there")
        if not self.ready_timeout > 0:
            raise ValueError(f"--ready-timeout must be positive, got {self.ready_timeout}")


BENCH_PRECISIONS = ("fp32", "fp16", "int8", "bf16")
BACKEND_ALIASES = {"ort": "ort-cpu"}


def backends_arg(text: str) -> tuple[str, ...]:
    """``--backend ort,openvino``: runtime backends, ``ort`` standing for ``ort-cpu``."""
    return tuple(BACKEND_ALIASES.get(b, b) for b in csv(text))


@dataclasses.dataclass
class BenchConfig(StageConfig):
    """Per-stage and end-to-end latency, FLOPs and memory of a bundle (torch-free runtime) or a model dir (PyTorch eager)."""

    KIND = "bench"

    model: str | None = opt(None, help="a teacher, student or pruned model directory (or builtin, builtin-student, builtin-pruned), run in PyTorch eager")
    bundle: str | None = opt(None, help="a bundle directory, run through the torch-free runtime's backends")
    backends: tuple[str, ...] = opt(("ort-cpu",), flag="--backend", parse=backends_arg,
                                    help="bundles: comma-separated runtime backends: ort (= ort-cpu), openvino, ort-cuda, tensorrt")
    precisions: tuple[str, ...] = opt(("fp32",), flag="--precision", parse=csv,
                                      help="comma-separated: bundles fp32 / fp16 / int8 (the graph variant), models fp32 / bf16 (weights dtype)")
    frames: int | None = opt(None, help="default: the model's or bundle's own")
    height: int | None = opt(None, help="default: the model's or bundle's own")
    width: int | None = opt(None, help="default: the model's or bundle's own")
    batch: int = opt(1, help="videos per generate call (a CFG teacher's UNet runs 2x this many rows)")
    steps: int | None = opt(None, help="sampler steps (default: the bundle's or student's default_steps, 50 for a teacher)")
    runs: int = opt(10, help="timed calls per stage after the warm-up")
    warmup: int = opt(2, help="untimed calls per stage first")
    e2e_runs: int | None = opt(None, help="timed end-to-end videos (default: --runs; a teacher's per-video figures are composed "
                                          "from its stage medians and this many real videos, default 1, check the composition)")
    threads: int | None = opt(None, help="runtime / torch threads (default: every core this process may use)")
    prompt: str = opt("a red circle moving left")
    seed: int = opt(0, parse=seed_arg)
    guidance: float | None = opt(None, help="default: the model's or bundle's own")
    verify: bool = opt(True, help="bundles: check every file's sha256 before loading")
    decoders: tuple[str, ...] = opt((), flag="--decoder", parse=csv,
                                    help="bundles: comma-separated decoders to bench, one row each (full, tiny, ...); default: the bundle's default")
    json: str | None = opt(None, help="write the results row(s) here (the report reads them: put it in a results directory)")
    overwrite: bool = opt(False, help="replace --json when it is a results file turbo-edge wrote (never any other file)")

    def __post_init__(self) -> None:
        if bool(self.model) == bool(self.bundle):
            raise ValueError("give exactly one of --model DIR (PyTorch eager) or --bundle DIR (the torch-free runtime)")
        self.backends = tuple(BACKEND_ALIASES.get(b, b) for b in self.backends)
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise ValueError(f"unknown --backend {list(unknown) or '(none)'}; choose from ort, {', '.join(sorted(BACKENDS))}")
        bad = [p for p in self.precisions if p not in BENCH_PRECISIONS]
        if bad or not self.precisions:
            raise ValueError(f"unknown --precision {bad or '(none)'}; choose from {', '.join(BENCH_PRECISIONS)}")
        if self.decoders and not self.bundle:
            raise ValueError("--decoder chooses among a bundle's decoders (bench --bundle); a model directory benches its full VAE")
        for name in self.decoders:
            check_decoder_name(name)
        if self.bundle and "bf16" in self.precisions:
            raise ValueError("--precision bf16 is a PyTorch weights dtype (--model); a bundle runs fp32, fp16 or int8 graphs")
        if self.model and "int8" in self.precisions:
            raise ValueError("--precision int8 is a bundle's graph (export with --precision int8, bench with --bundle); --model runs fp32, fp16 or bf16")
        if self.model and self.backends != ("ort-cpu",):
            raise ValueError("--backend chooses how a bundle runs; --model runs in PyTorch eager (export it and use --bundle)")
        for name in ("batch", "runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name} must be an integer >= 1, got {value!r}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.e2e_runs is not None and self.e2e_runs < 1:
            raise ValueError(f"--e2e-runs must be >= 1, got {self.e2e_runs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        for name in ("frames", "height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.threads is not None:
            check_threads(self.threads)
        check_prompt_text(self.prompt)
        check_seed(self.seed)
        check_guidance(self.guidance)
