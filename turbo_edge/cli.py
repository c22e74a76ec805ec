"""The ``turbo-edge`` command line. Every subcommand resolves a config, prints it with ``--dry-run``, or runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from collections.abc import Callable
from typing import Any

from turbo_edge.core.config import StageConfig, parse_set

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], StageConfig], Callable[[StageConfig], Any]]] = {}


class UserError(Exception):
    """An error caused by the user's input: reported as one line, no traceback."""


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None], build: Callable[[argparse.Namespace], StageConfig]):
    def deco(run: Callable[[StageConfig], Any]) -> Callable[[StageConfig], Any]:
        COMMANDS[name] = (add_args, build, run)
        return run

    return deco


def _from_args(cls: type[StageConfig], args: argparse.Namespace, **renames: str) -> StageConfig:
    """Build ``cls`` from a ``--config`` JSON (if given), then ``--set KEY=VALUE`` pairs, then the flags passed."""
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = cls.load(args.config).to_dict()
        base.pop("kind"), base.pop("version")
    names = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for text in getattr(args, "set", None) or []:
        key, value = parse_set(text)
        if key not in names:
            raise ValueError(f"--set {key}: not a {cls.KIND} config key; valid keys: {sorted(names)}")
        if hints.get(key) in (str, str | None) and value is not None and not isinstance(value, str):
            value = text.partition("=")[2]  # a string field keeps the text as typed (--set teacher=123)
        base[key] = value
    for key, value in vars(args).items():
        field_name = renames.get(key, key)
        if field_name in names and value is not None:
            base[field_name] = value
    return cls.from_dict(base)


# ------------------------------------------------------------------ generate


@dataclasses.dataclass
class GenerateConfig(StageConfig):
    KIND = "generate"

    prompt: str = ""
    model: str = "builtin"
    bundle: str | None = None  # run an exported bundle with the torch-free runtime instead of --model
    backend: str = "ort-cpu"
    precision: str = "fp32"
    threads: int = 1
    steps: int | None = None  # None: 50 for a teacher, the bundle's default otherwise
    guidance: float | None = None
    seed: int = 0
    out: str = "clip.gif"
    scale: int = 4
    fps: int = 8

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("empty prompt: describe the video, e.g. \"a red circle moving left\"")
        if not self.out.lower().endswith((".gif", ".mp4")):
            raise ValueError(f"--out must end in .gif or .mp4, got {self.out!r}")


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help='e.g. "a red circle moving left"')
    p.add_argument("--model", help="builtin (default) or a diffusers text-to-video directory")
    p.add_argument("--bundle", help="run an exported bundle with the torch-free runtime instead of --model")
    p.add_argument("--backend", choices=["ort-cpu", "ort-cuda", "openvino", "tensorrt"])
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    p.add_argument("--threads", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output .gif or .mp4")
    p.add_argument("--scale", type=int, help="nearest-neighbour upscaling of the written video")


@command("generate", _generate_args, lambda a: _from_args(GenerateConfig, a))
def _generate(cfg: GenerateConfig) -> None:
    if cfg.bundle:
        from turbo_edge.runtime.cli_generate import BundleGenerateConfig, run_generate
        from turbo_edge.runtime.errors import BackendUnavailableError, BundleError, RuntimeInputError

        try:
            print(run_generate(BundleGenerateConfig(
                prompt=cfg.prompt, bundle=cfg.bundle, steps=cfg.steps, seed=cfg.seed, guidance=cfg.guidance, out=cfg.out,
                backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, scale=cfg.scale,
            )))
        except (RuntimeInputError, BundleError, BackendUnavailableError) as exc:
            raise UserError(str(exc)) from exc
        return
    from turbo_edge.core.eval_run import model_kind
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.runtime.video import write_video

    kind = model_kind(cfg.model)
    if kind != "teacher":
        raise UserError(f"`generate --model` runs teachers in PyTorch; {cfg.model} is a {kind}")
    model = load_teacher(cfg.model)
    guidance = cfg.guidance if cfg.guidance is not None else float(model.meta.get("default_guidance", 3.0))
    steps = cfg.steps or 50
    clip = generate_teacher(model, [cfg.prompt], steps=steps, guidance=guidance, seed=cfg.seed, progress=True)[0]
    path = write_video(clip, cfg.out, fps=cfg.fps, scale=cfg.scale)
    print(f"wrote {path} ({clip.shape[0]} frames, {clip.shape[1]}x{clip.shape[2]}, {steps} DDIM steps, guidance {guidance})")


# ------------------------------------------------------------------ eval


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="builtin, a model directory, a bundle directory (turbo-edge export), or groundtruth / noise (evaluator anchors)")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--prompts", choices=["train", "val", "heldout"])
    p.add_argument("--num", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--json", help="write the result here")
    p.add_argument("--save-clips", dest="save_clips", help="directory for one GIF per clip")
    p.add_argument("--backend", help="bundles: runtime backend (ort-cpu, openvino, ort-cuda, tensorrt)")
    p.add_argument("--precision", help="bundles: fp32, fp16 or int8 (where the bundle has that graph)")
    p.add_argument("--threads", type=int, help="bundles: runtime threads (default: every core)")


def _build_eval(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.core.eval_run import EvalConfig

    return _from_args(EvalConfig, a)


@command("eval", _eval_args, _build_eval)
def _eval(cfg: StageConfig) -> None:
    from turbo_edge.core.eval_run import run_eval

    result = run_eval(cfg)  # type: ignore[arg-type]
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))


# ------------------------------------------------------------------ teacher train / export


def _teacher_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (checkpoints, logs, encoded data)")
    p.add_argument("--phases", type=lambda v: tuple(v.split(",")), help="comma-separated subset of vae,unet")
    p.add_argument("--vae-steps", dest="vae_steps", type=int)
    p.add_argument("--unet-steps", dest="unet_steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--threads", type=int, help="torch threads (1 keeps a second core free)")
    p.add_argument("--seed", type=int)
    p.add_argument("--min-snr-plus-one", dest="min_snr_plus_one", action="store_true", default=None, help="loss weight min(SNR,gamma)+1 in x0 terms (weights high noise)")
    p.add_argument("--freeze-text-encoder", dest="train_text_encoder", action="store_false", default=None,
                   help="keep a freshly initialised text encoder frozen (as real T2V models keep theirs)")
    p.add_argument("--init-from", dest="init_from", help="warm start from this teacher (alias or directory) of the builtin architecture")
    p.add_argument("--text-token-std", dest="text_token_std", type=float,
                   help="re-draw the frozen text encoder's token embeddings with this std (1.0 keeps every word distinct)")
    p.add_argument("--high-noise-fraction", dest="high_noise_fraction", type=float,
                   help="fraction of each batch whose timestep is drawn from [--high-noise-min-t, 1000), where motion is decided")
    p.add_argument("--high-noise-min-t", dest="high_noise_min_t", type=int, help="lower end of the high-noise timestep range (default 850)")


def _build_teacher_train(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.teacher.train import TeacherTrainConfig

    return _from_args(TeacherTrainConfig, a)


@command("teacher train", _teacher_train_args, _build_teacher_train)
def _teacher_train(cfg: StageConfig) -> None:
    from turbo_edge.teacher.train import run

    run(cfg)  # type: ignore[arg-type]


@dataclasses.dataclass
class TeacherExportConfig(StageConfig):
    KIND = "teacher_export"

    run: str = "runs/teacher"
    out: str = "turbo_edge/assets/teacher"
    ema: bool = True


def _teacher_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", help="teacher run directory")
    p.add_argument("--out", help="output diffusers directory")
    p.add_argument("--online", dest="ema", action="store_false", default=None, help="export online weights, not EMA")


@command("teacher export", _teacher_export_args, lambda a: _from_args(TeacherExportConfig, a))
def _teacher_export(cfg: TeacherExportConfig) -> None:
    from turbo_edge.teacher.train import export_teacher

    print(f"wrote {export_teacher(cfg.run, cfg.out, use_ema=cfg.ema)}")


# ------------------------------------------------------------------ export / engine / verify
from turbo_edge.export.cli_commands import add_cli as _add_export_cli  # noqa: E402

_add_export_cli(command, _from_args)


def _teacher_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="teacher: builtin or a model directory of the world's geometry")
    p.add_argument("--timesteps", type=lambda v: tuple(int(x) for x in v.split(",")), help="comma-separated, e.g. 700,850,950")
    p.add_argument("--num", type=int, help="moving validation clips")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="write the result here")


def _build_teacher_probe(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.teacher.probe import ProbeConfig

    return _from_args(ProbeConfig, a)


@command("teacher probe", _teacher_probe_args, _build_teacher_probe)
def _teacher_probe(cfg: StageConfig) -> None:
    from turbo_edge.teacher.probe import format_table, run

    print(format_table(run(cfg)))  # type: ignore[arg-type]


@dataclasses.dataclass
class ConvertConfig(StageConfig):
    KIND = "convert"

    model: str = ""
    out: str = ""
    dtype: str = "float16"

    def __post_init__(self) -> None:
        from turbo_edge.core.pipeline_io import WEIGHT_DTYPES

        if not self.model or not self.out:
            raise ValueError("give --model (alias or directory) and --out (a new directory)")
        if self.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"--dtype must be one of {WEIGHT_DTYPES}, got {self.dtype!r}")


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="alias or model directory")
    p.add_argument("--out", help="new directory for the converted copy")
    p.add_argument("--dtype", help="float16 (default: half the bytes), bfloat16 or float32")


@command("convert", _convert_args, lambda a: _from_args(ConvertConfig, a))
def _convert(cfg: StageConfig) -> None:
    from turbo_edge.core.pipeline_io import convert_weights

    print(f"wrote {convert_weights(cfg.model, cfg.out, cfg.dtype)} ({cfg.dtype} weights)")  # type: ignore[attr-defined]


# ------------------------------------------------------------------ distill


def _distill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", help="builtin (default) or a diffusers text-to-video directory")
    p.add_argument("--out", help="run directory; the student lands in OUT/student")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--mode", choices=["lora", "full"])
    p.add_argument("--lora-rank", dest="lora_rank", type=int)
    p.add_argument("--init-student", dest="init_student", help="top up this student (distilled earlier from the same teacher) instead of starting from the teacher")
    p.add_argument("--motion-guidance", dest="motion_guidance", type=float, help="strength; 0 disables")
    p.add_argument("--vsd-weight", dest="vsd_weight", type=float, help="variational score distillation weight; 0 disables")
    p.add_argument("--reward", dest="rewards", action="append", type=_reward_arg, help="NAME:WEIGHT[:FRAMES], repeatable")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int)


def _reward_arg(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--reward takes NAME:WEIGHT[:FRAMES], got {text!r}")
    entry: dict[str, Any] = {"name": parts[0], "weight": float(parts[1])}
    if len(parts) == 3:
        entry["frames"] = int(parts[2])
    return entry


def _build_distill(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.distill.config import DistillConfig

    return _from_args(DistillConfig, a)


@command("distill", _distill_args, _build_distill)
def _distill(cfg: StageConfig) -> None:
    from turbo_edge.distill.train import train

    print(f"wrote {train(cfg)}")  # type: ignore[arg-type]


# ------------------------------------------------------------------ prune


def _prune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", help="builtin-student (default) or a student directory from `turbo-edge distill`")
    p.add_argument("--out", help="run directory; the pruned student lands in OUT/pruned")
    p.add_argument("--plan", help="a pruning_plan.json to replay (default: the plan --rule makes)")
    p.add_argument("--rule", choices=["vdmini", "lowest_cost", "none"], help="block plan rule; none: channel pruning only")
    p.add_argument("--channel-ratio", dest="channel_ratio", type=float,
                   help="after the block plan, prune this fraction of every internal width with torch-pruning; 0 (default) disables")
    p.add_argument("--channel-importance", dest="channel_importance", choices=["magnitude", "l1", "random"])
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--icd-weight", dest="icd_weight", type=float, help="Individual Content Distillation weight; 0 disables")
    p.add_argument("--mca-weight", dest="mca_weight", type=float, help="Multi-frame Content Adversarial weight; 0 disables")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int)


def _build_prune(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.prune.config import PruneConfig

    return _from_args(PruneConfig, a)


@command("prune", _prune_args, _build_prune)
def _prune(cfg: StageConfig) -> None:
    from turbo_edge.prune.train import prune

    print(f"wrote {prune(cfg)}")  # type: ignore[arg-type]


# ------------------------------------------------------------------ rewards train


def _rewards_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--which", choices=["image", "video", "latent"])
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="default: turbo_edge/assets/rewards/<name>")
    p.add_argument("--teacher", help="latent reward: the teacher whose VAE defines the latents")
    p.add_argument("--target", help="latent reward: what it predicts (builtin-video, motion, ...)")
    p.add_argument("--samples", type=int, help="latent reward: encoded training samples")
    p.add_argument("--x0-fraction", dest="x0_fraction", type=float,
                   help="latent reward: share of samples that are the teacher's one-step x0 from a noised clip (0 disables)")


def _build_rewards(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.distill.rewards.train import RewardTrainConfig

    return _from_args(RewardTrainConfig, a)


@command("rewards train", _rewards_args, _build_rewards)
def _rewards_train(cfg: StageConfig) -> None:
    from turbo_edge.distill.rewards.train import run_training

    print(json.dumps(run_training(cfg), indent=2, default=str))  # type: ignore[arg-type]


# ------------------------------------------------------------------ evaluator train


@dataclasses.dataclass
class EvaluatorTrainConfig(StageConfig):
    KIND = "evaluator_train"

    steps: int = 1200
    batch: int = 32
    seed: int = 0
    out: str | None = None  # default: the package's assets/evaluator


def _evaluator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out")


@command("evaluator train", _evaluator_args, lambda a: _from_args(EvaluatorTrainConfig, a))
def _evaluator_train(cfg: EvaluatorTrainConfig) -> None:
    from turbo_edge.core import evaluator as ev

    net = ev.train_evaluator(steps=cfg.steps, batch=cfg.batch, seed=cfg.seed)
    out = cfg.out or ev.ASSET_DIR
    ev.save_evaluator(net, out, meta={"config": cfg.to_dict(), "reproduce": f"turbo-edge evaluator train --steps {cfg.steps} --batch {cfg.batch} --seed {cfg.seed}"})
    print(f"wrote {out}")


# ------------------------------------------------------------------ demo


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["quick", "full"], help="quick (default, ~10 min on 2 cores) or full (reproduces the shipped students)")
    p.add_argument("--out", help="working directory; finished stages and rows are reused on a re-run (default build/demo)")
    p.add_argument("--teacher")
    p.add_argument("--num-prompts", dest="num_prompts", type=int)
    p.add_argument("--distill-steps", dest="distill_steps", type=int)
    p.add_argument("--prune-steps", dest="prune_steps", type=int)
    p.add_argument("--teacher-steps", dest="teacher_steps", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--backends", type=lambda v: tuple(v.split(",")), help="runtime backends, e.g. ort-cpu,openvino (GPU: ort-cuda,tensorrt)")
    p.add_argument("--precisions", type=lambda v: tuple(v.split(",")), help="bundle precisions, e.g. fp32,int8 (GPU: fp32,fp16,int8)")


def _build_demo(a: argparse.Namespace) -> StageConfig:
    from turbo_edge.demo import DemoConfig

    return _from_args(DemoConfig, a)


@command("demo", _demo_args, _build_demo)
def _demo(cfg: StageConfig) -> None:
    from turbo_edge.demo import run_demo

    run_demo(cfg)  # type: ignore[arg-type]


# ------------------------------------------------------------------ report


@dataclasses.dataclass
class ReportConfig(StageConfig):
    KIND = "report"

    results: str = "benchmarks/results"
    clips: str | None = None  # a directory with index.json (prompts, per-row GIFs), e.g. the demo's --out
    out: str = "build/report"

    def __post_init__(self) -> None:
        if not self.results or not self.out:
            raise ValueError("--results and --out must name directories")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="directory of benchmark results *.json (default benchmarks/results)")
    p.add_argument("--clips", help="directory with index.json and the GIFs it names: shown side by side per prompt")
    p.add_argument("--out", help="report directory: report.md, index.html, plots/, clips/ (default build/report)")


@command("report", _report_args, lambda a: _from_args(ReportConfig, a))
def _report(cfg: ReportConfig) -> None:
    from turbo_edge.report import render_report

    summary = render_report(cfg.results, cfg.out, clips_dir=cfg.clips)
    for path in [summary["report_md"], summary["index_html"], *summary["plots"]]:
        print(f"wrote {path}")
    if summary["clips"]:
        print(f"copied {len(summary['clips'])} clips to {cfg.out}/clips")


# ------------------------------------------------------------------ entry point

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turbo-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (add_args, _, _run) in COMMANDS.items():
        head, _, tail = name.partition(" ")
        if tail:
            if head not in groups:
                groups[head] = sub.add_parser(head).add_subparsers(dest="subcommand", required=True)
            p = groups[head].add_parser(tail)
        else:
            p = sub.add_parser(head)
        add_args(p)
        p.add_argument("--config", help="a JSON config; flags given on the command line override it")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="set any config field (VALUE as JSON, e.g. --set w_max=6 --set 'rewards=[]'); repeatable, overrides --config, flags override it")
        p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        p.set_defaults(_command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _, build, run = COMMANDS[args._command]
    try:
        cfg = build(args)
        if args.dry_run:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        run(cfg)
    except (UserError, ValueError, FileNotFoundError) as exc:
        if args.verbose:
            raise
        print(f"turbo-edge {args._command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
