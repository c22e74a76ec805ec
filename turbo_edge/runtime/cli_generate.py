"""``turbo-edge generate "prompt" --bundle B``: the runtime behind the CLI (torch-free), plus a standalone entry.

``turbo_edge/cli.py`` routes ``generate --bundle`` here; ``python -m turbo_edge.runtime.cli_generate`` runs the
same thing without the rest of the CLI. ``--dry-run`` prints the resolved config and loads nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings

from turbo_edge.core.config import StageConfig
from turbo_edge.runtime.backends import BACKENDS
from turbo_edge.runtime.bundle import PRECISIONS


@dataclasses.dataclass
class BundleGenerateConfig(StageConfig):
    KIND = "generate-bundle"

    prompt: str = ""
    bundle: str = ""
    steps: int | None = None  # None: the bundle's default_steps
    seed: int = 0
    guidance: float | None = None  # None: the bundle's
    out: str = "clip.mp4"
    backend: str = "ort-cpu"
    precision: str = "fp32"
    threads: int = 1
    scale: int = 4
    fps: int | None = None  # None: the bundle's video fps
    verify: bool = True

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("empty prompt: describe the video, e.g. \"a red circle moving left\"")
        if not self.bundle:
            raise ValueError("--bundle is required: a directory written by `turbo-edge export`")
        if not self.out.lower().endswith((".gif", ".mp4")):
            raise ValueError(f"--out must end in .gif or .mp4, got {self.out!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; choose one of {sorted(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown --precision {self.precision!r}; choose one of {list(PRECISIONS)}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help='e.g. "a red circle moving left"')
    p.add_argument("--bundle", required=True, help="bundle directory written by `turbo-edge export`")
    p.add_argument("--steps", type=int, help="sampler steps; one of the bundle's supported_steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--out", help="output .gif or .mp4")
    p.add_argument("--backend", choices=sorted(BACKENDS))
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--threads", type=int)
    p.add_argument("--scale", type=int, help="nearest-neighbour upscaling of the written video")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None, help="skip the sha256 check of the bundle's files")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


def config_from_args(a: argparse.Namespace) -> BundleGenerateConfig:
    names = {f.name for f in dataclasses.fields(BundleGenerateConfig)}
    return BundleGenerateConfig(**{k: v for k, v in vars(a).items() if k in names and v is not None})


def run_generate(cfg: BundleGenerateConfig) -> str:
    """Generate one clip and write it; returns the one-line report the CLI prints."""
    from turbo_edge.runtime.pipeline import Pipeline, PromptTruncatedWarning
    from turbo_edge.runtime.video import write_video

    pipe = Pipeline.from_bundle(cfg.bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, verify=cfg.verify)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptTruncatedWarning)
        result = pipe.run([cfg.prompt], steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance)
    seconds = time.perf_counter() - start
    clip = result.frames[0]
    fps = cfg.fps or int(pipe.bundle.video.get("fps", 8))
    path = write_video(clip, cfg.out, fps=fps, scale=cfg.scale)
    note = "; WARNING: prompt truncated to the text encoder's length" if result.truncated[0] else ""
    for w in caught:
        if not issubclass(w.category, PromptTruncatedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return (f"wrote {path} ({clip.shape[0]} frames, {clip.shape[1]}x{clip.shape[2]}, {result.steps} {pipe.bundle.sampler.kind} steps, "
            f"{cfg.backend} {cfg.precision}, {seconds * 1e3:.0f} ms){note}")


def main(argv: list[str] | None = None) -> int:
    from turbo_edge.runtime.errors import BackendUnavailableError, BundleError, RuntimeInputError

    parser = argparse.ArgumentParser(prog="turbo-edge generate", description="Generate a clip from an exported bundle (no torch).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.dry_run:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        print(run_generate(cfg))
    except (ValueError, BundleError, RuntimeInputError, BackendUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
