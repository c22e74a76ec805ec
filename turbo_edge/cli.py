"""The ``turbo-edge`` command line, made from the stage configs.

Every subcommand is one config class (``turbo_edge.spec.configs``) and one runner. Its flags, help and choices
come from the config's field metadata (``spec.config.opt``), so a flag cannot drift from the field it sets;
``--config FILE`` < ``--set KEY=VALUE`` < explicit flags; ``--dry-run`` prints the resolved config. Importing
this module imports no torch: each runner imports its stage when it runs (``generate --bundle`` never does).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from turbo_edge.spec import logs
from turbo_edge.spec.config import StageConfig, leaf_fields, parse_set, resolve_key, set_path
from turbo_edge.spec.configs import (
    BenchConfig,
    ConvertConfig,
    DataPrepareConfig,
    DecoderSamplesConfig,
    DecoderTrainConfig,
    DemoConfig,
    DistillConfig,
    EngineConfig,
    EvalConfig,
    EvaluatorTrainConfig,
    ExportConfig,
    GenerateConfig,
    ProbeConfig,
    PruneConfig,
    ReportConfig,
    RewardTrainConfig,
    ServeConfig,
    TeacherExportConfig,
    TeacherTrainConfig,
    VerifyConfig,
    WorldExportConfig,
)


class UserError(Exception):
    """An error caused by the user's input: reported as one line, no traceback."""


# ------------------------------------------------------------------ flags from config fields


def _scalar_type(tp: Any) -> Any:
    """int / float / str / bool of a hint like ``int | None``; None for anything else (lists, tuples, dicts)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else [tp]
    return args[0] if len(args) == 1 and args[0] in (int, float, str, bool) else None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[StageConfig]) -> None:
    """One argument per leaf field of ``cls`` (nested configs flattened), from its ``opt`` metadata."""
    for key, (f, tp) in leaf_fields(cls).items():
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        dest = f"cfg__{key}"
        help_text = meta.get("help") or None
        kind = _scalar_type(tp)
        if meta.get("positional"):
            parser.add_argument(dest, metavar=f.name.upper(), help=help_text, nargs="?", default=None)  # the config says what is missing
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            if meta.get("negative"):
                parser.add_argument(meta["negative"], dest=dest, action="store_false", default=None, help=argparse.SUPPRESS)
            continue
        parse = meta.get("parse") or kind
        if parse is None:
            continue  # a list / dict field without a parser: --set only
        default = f.default if f.default is not dataclasses.MISSING else None
        if default not in (None, "", ()) and not meta.get("append"):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text or ''} (default: {shown})".strip()
        parser.add_argument(flag, dest=dest, type=_checked(parse), choices=meta.get("choices"), default=None,
                            metavar=None if meta.get("choices") else f.name.upper(),
                            action="append" if meta.get("append") else "store", help=help_text)


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc  # argparse names the flag itself

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def config_from_args(cls: type[StageConfig], args: argparse.Namespace) -> StageConfig:
    """``cls`` from a ``--config`` JSON (if given), then ``--set KEY=VALUE`` pairs, then the flags passed."""
    data: dict[str, Any] = cls.load(args.config).fields_dict() if getattr(args, "config", None) else cls().fields_dict() if _has_default(cls) else {}
    leaves = leaf_fields(cls)
    for text in getattr(args, "set", None) or []:
        key, value = parse_set(text)
        dotted = resolve_key(cls, key)
        if _scalar_type(leaves[dotted][1]) is str and value is not None and not isinstance(value, str):
            value = text.partition("=")[2]  # a string field keeps the text as typed (--set teacher=123)
        set_path(data, dotted, value)
    for name, value in vars(args).items():
        if name.startswith("cfg__") and value is not None:
            set_path(data, name.removeprefix("cfg__"), value)
    return cls.from_fields(data)


def _has_default(cls: type[StageConfig]) -> bool:
    try:
        cls()
    except (TypeError, ValueError):
        return False
    return True


# ------------------------------------------------------------------ runners (each imports its stage when it runs)


def _generate(cfg: GenerateConfig) -> None:
    if cfg.bundle:
        from turbo_edge.runtime.generate import run_generate

        print(run_generate(cfg))
        return
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.sampling import clip_geometry, generate_teacher, sampling_scheduler
    from turbo_edge.evaluate import model_kind
    from turbo_edge.runtime.generate import check_clips_out, write_clips
    from turbo_edge.runtime.video import write_video

    prompts = check_clips_out(cfg)  # before the model loads
    kind = model_kind(cfg.model)
    if kind != "teacher":
        raise UserError(f"`generate --model` runs teachers in PyTorch; {cfg.model} is a {kind}: export it and use --bundle")
    model = load_teacher(cfg.model)
    guidance = cfg.guidance if cfg.guidance is not None else float(model.card.default_guidance)
    steps = cfg.steps or model.card.default_steps
    size = {"frames": cfg.frames, "height": cfg.height, "width": cfg.width}
    clip_geometry(model, *size.values())  # a geometry the model cannot take: one line, before any sampling
    sampler = type(sampling_scheduler(model, steps)).__name__
    if prompts is not None:  # each clip as its own call would make it: batch of one, the same seed
        out = write_clips(cfg, prompts, lambda p: generate_teacher(model, [p], steps=steps, guidance=guidance, seed=cfg.seed, **size)[0],
                          cfg.fps or model.card.fps, {"model": cfg.model, "steps": steps, "guidance": guidance})
        print(f"wrote {len(prompts)} clips to {out} ({cfg.clip_format}, {steps} {sampler} steps, guidance {guidance})")
        return
    clip = generate_teacher(model, [cfg.prompt], steps=steps, guidance=guidance, seed=cfg.seed, progress=True, **size)[0]
    path = write_video(clip, cfg.out, fps=cfg.fps or model.card.fps, scale=cfg.scale, overwrite=cfg.overwrite)
    print(f"wrote {path} ({clip.shape[0]} frames, {clip.shape[1]}x{clip.shape[2]}, {steps} {sampler} steps, guidance {guidance})")


def _eval(cfg: EvalConfig) -> None:
    from turbo_edge.evaluate import run_eval

    result = run_eval(cfg)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))


def _teacher_train(cfg: TeacherTrainConfig) -> None:
    from turbo_edge.teacher.train import run

    run(cfg)


def _teacher_export(cfg: TeacherExportConfig) -> None:
    from turbo_edge.teacher.train import export_teacher

    print(f"wrote {export_teacher(cfg.run, cfg.out, use_ema=cfg.ema, overwrite=cfg.overwrite)}")


def _teacher_probe(cfg: ProbeConfig) -> None:
    from turbo_edge.teacher.probe import format_table, run

    print(format_table(run(cfg)))


def _convert(cfg: ConvertConfig) -> None:
    from turbo_edge.core.pipeline_io import convert_weights

    out = convert_weights(cfg.model, cfg.out, cfg.dtype, overwrite=cfg.overwrite, decoders_from=cfg.decoders_from,
                          replace_decoders=cfg.replace_decoders, only_decoders=cfg.only_decoders)
    print(f"wrote {out} ({cfg.dtype} weights)")


def _distill(cfg: DistillConfig) -> None:
    from turbo_edge.distill.train import train

    print(f"wrote {train(cfg)}")


def _prune(cfg: PruneConfig) -> None:
    from turbo_edge.prune.train import prune

    print(f"wrote {prune(cfg)}")


def _decoder_train(cfg: DecoderTrainConfig) -> None:
    from turbo_edge.decoder.train import train

    print(f"wrote {train(cfg)}")


def _decoder_samples(cfg: DecoderSamplesConfig) -> None:
    from turbo_edge.decoder.samples import samples

    index = samples(cfg)
    print(f"wrote {index['samples']} {cfg.steps}-step samples of {cfg.model} to {cfg.out} ({len(index['shards'])} shards)")


def _rewards_train(cfg: RewardTrainConfig) -> None:
    from turbo_edge.core.rewards.train import run_training

    print(json.dumps(run_training(cfg), indent=2, default=str))


def _evaluator_train(cfg: EvaluatorTrainConfig) -> None:
    from turbo_edge.core import evaluator as ev

    net = ev.train_evaluator(steps=cfg.steps, batch=cfg.batch, seed=cfg.seed)
    out = cfg.out or ev.ASSET_DIR
    ev.save_evaluator(net, out, meta={"config": cfg.to_dict(), "reproduce": cfg.command_line("evaluator train")})
    print(f"wrote {out}")


def _export(cfg: ExportConfig) -> None:
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.bundle import verify_bundle

    path = export_bundle(cfg.model, cfg.out, cfg)
    m = verify_bundle(path)
    print(f"wrote {path}")
    print(json.dumps(m["parity"], indent=1))


def _engine(cfg: EngineConfig) -> None:
    from turbo_edge.export.tensorrt_build import TensorRTUnavailable, build_engines

    try:
        paths = build_engines(cfg.bundle, cfg)
    except TensorRTUnavailable as exc:
        raise UserError(str(exc)) from exc
    for p in paths:
        print(f"wrote {p}")


def _verify(cfg: VerifyConfig) -> None:
    from turbo_edge.spec.bundle import verify_bundle

    m = verify_bundle(cfg.bundle)
    source = m.get("source") or {}
    print(f"{cfg.bundle}: ok ({len(m['files'])} files, schema {m['schema_version']}, "
          f"{source.get('kind', '?')} {source.get('model', '?')}, sampler {m['sampler']['kind']})")
    for name, entry in m["components"].items():  # variants only some backends run (OpenVINO IR), with where their gate ran
        for precision, fmt in (entry.get("formats") or {}).items():
            if fmt != "onnx":
                gate = (m.get("parity") or {}).get(name, {}).get(precision, {})
                print(f"{name} {precision}: OpenVINO IR ({entry['files'][precision]}), parity gated on {gate.get('backend', '?')} "
                      f"(mean_rel {gate.get('mean_rel', float('nan')):.3g}); run it with --backend openvino")
    if "decoders" in m:  # decoder variants: which there are, the default, and the precisions each graph has
        names = [m["decoders"]["default"], *sorted(set(m["decoders"]["variants"]) - {m["decoders"]["default"]})]
        have = {n: sorted(m["components"][m["decoders"]["variants"][n]["component"]]["files"]) for n in names}
        print("decoders: " + ", ".join(f"{n} ({'/'.join(have[n])})" for n in names) + f"; default {names[0]} (choose with --decoder)")


def _demo(cfg: DemoConfig) -> None:
    from turbo_edge.demo import run_demo

    run_demo(cfg)


def _report(cfg: ReportConfig) -> None:
    from turbo_edge.report import render_report

    summary = render_report(cfg.results, cfg.out, clips_dir=cfg.clips)
    for path in [summary["report_md"], summary["index_html"], *summary["plots"]]:
        print(f"wrote {path}")
    if summary["clips"]:
        print(f"copied {len(summary['clips'])} clips to {cfg.out}/clips")
    if cfg.page:
        from turbo_edge.report.results_page import write_results_page

        print(f"wrote {write_results_page(cfg.results, cfg.page)}")


def _bench(cfg: BenchConfig) -> None:
    import shlex

    from turbo_edge.bench import format_table, run_bench
    from turbo_edge.spec.errors import BackendUnavailableError

    try:
        record = run_bench(cfg, command="turbo-edge " + shlex.join(_invocation) if _invocation else None)
    except BackendUnavailableError as exc:  # e.g. --backend ort-cuda without onnxruntime-gpu: what to install, one line
        raise UserError(str(exc)) from exc
    print(format_table(record))
    if cfg.json:
        print(f"wrote {cfg.json}")


def _serve(cfg: ServeConfig) -> None:
    from turbo_edge.serve import ServeError, run_serve

    try:
        run_serve(cfg, verbose=logs.verbose())
    except ServeError as exc:
        raise UserError(str(exc)) from exc


def _data_prepare(cfg: DataPrepareConfig) -> None:
    from turbo_edge.core.dataset import prepare

    index = prepare(cfg)
    bad = ", ".join(f"{n} {reason}" for reason, n in index["bad"].items() if n) or "none"
    print(f"wrote {cfg.out}: {index['samples']} clips in {len(index['shards'])} shards of {index['geometry']['frames']}x"
          f"{index['geometry']['height']}x{index['geometry']['width']} (bad: {bad})")


def _world_export(cfg: WorldExportConfig) -> None:
    from turbo_edge.core.world_export import export_world

    print(f"wrote {export_world(cfg)} ({cfg.num} {cfg.split} clips as mp4 + metadata.jsonl)")


# name -> (config class, runner, one-line help)
COMMANDS: dict[str, tuple[type[StageConfig], Callable[[Any], None], str]] = {
    "generate": (GenerateConfig, _generate, "one clip (or one per --prompts line) from a teacher (PyTorch) or a bundle (the torch-free runtime)"),
    "eval": (EvalConfig, _eval, "score a model, a bundle or an anchor with the held-out evaluator, or your own prompts with your CLIP / FD models"),
    "teacher train": (TeacherTrainConfig, _teacher_train, "train the builtin tiny teacher (autoencoder, then UNet)"),
    "teacher export": (TeacherExportConfig, _teacher_export, "write a teacher run as a diffusers directory"),
    "teacher probe": (ProbeConfig, _teacher_probe, "what a teacher listens to, per timestep (no sampling)"),
    "convert": (ConvertConfig, _convert, "copy a model directory with its weights in another dtype"),
    "distill": (DistillConfig, _distill, "consistency-distil a few-step student from a teacher"),
    "prune": (PruneConfig, _prune, "prune a student (VDMini blocks, optional channels) and recover it"),
    "decoder samples": (DecoderSamplesConfig, _decoder_samples, "write a student's own final latents as a prepared dataset (the inputs its decoder sees), for decoder train --data"),
    "decoder train": (DecoderTrainConfig, _decoder_train, "distil a tiny decoder (memory blocks, no attention) against the model's own VAE decoder"),
    "rewards train": (RewardTrainConfig, _rewards_train, "train a builtin reward (image, video, latent)"),
    "evaluator train": (EvaluatorTrainConfig, _evaluator_train, "retrain the held-out evaluator"),
    "data prepare": (DataPrepareConfig, _data_prepare, "decode a video source into shards of latents + text embeddings (resumable)"),
    "world export": (WorldExportConfig, _world_export, "write the synthetic world's clips as mp4 + metadata.jsonl (a data prepare source)"),
    "export": (ExportConfig, _export, "export a model to a verified ONNX bundle (fp32 / fp16 / int8)"),
    "engine": (EngineConfig, _engine, "build TensorRT engines for a bundle (NVIDIA GPU)"),
    "verify": (VerifyConfig, _verify, "check a bundle's manifest and every file's sha256"),
    "demo": (DemoConfig, _demo, "the main job: distil, prune, export, run; prints the side-by-side table"),
    "report": (ReportConfig, _report, "render benchmark results as Markdown + HTML (and docs/results.md)"),
    "bench": (BenchConfig, _bench, "per-stage and end-to-end latency, FLOPs vs the host's peak and memory of a bundle or a model"),
    "serve": (ServeConfig, _serve, "serve a bundle on Triton Inference Server (CPU Python backend; --write-only for GPU hosts, unverified)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turbo-edge", exit_on_error=False,
                                     description="Distil, prune, export and run few-step text-to-video diffusion students.")
    parser.add_argument("-v", "--verbose", action="store_true", help="third-party INFO logs and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (cls, _run, help_text) in COMMANDS.items():
        head, _, tail = name.partition(" ")
        if tail:
            if head not in groups:
                groups[head] = sub.add_parser(head, help=f"{head} subcommands", exit_on_error=False).add_subparsers(dest="subcommand", required=True)
            p = groups[head].add_parser(tail, help=help_text, description=help_text, exit_on_error=False)
        else:
            p = sub.add_parser(head, help=help_text, description=help_text, exit_on_error=False)
        add_config_arguments(p, cls)
        p.add_argument("--config", help="a JSON config; --set and flags override it")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="set any config field (VALUE as JSON, e.g. --set w_max=6 --set 'rewards=[]'); repeatable, overrides --config, flags override it")
        p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(_command=name)
    return parser


_invocation: list[str] = []  # the running command's arguments, for runners that record them (bench's results file)


def main(argv: list[str] | None = None) -> int:
    _invocation[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except argparse.ArgumentError as exc:  # a bad flag value: one line naming the flag, as every other input error
        print(f"turbo-edge: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    logs.configure(verbose=args.verbose)
    cls, run, _ = COMMANDS[args._command]
    try:
        cfg = config_from_args(cls, args)
        if args.dry_run:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        run(cfg)
    except (UserError, ValueError, FileNotFoundError, FileExistsError) as exc:
        if args.verbose:
            raise
        print(f"turbo-edge {args._command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only --out, a full disk, a path that is a folder: one line naming the path
        if args.verbose:
            raise
        print(f"turbo-edge {args._command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.verbose:
            raise
        print(f"turbo-edge {args._command}: interrupted (Ctrl-C); outputs are written whole or not at all, so re-run the "
              "command to finish (run directories resume)", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose or type(exc).__name__ != "SafetensorError":
            raise
        # safetensors' own error type is no ValueError: a damaged weights file the user named (e.g. --clip DIR)
        print(f"turbo-edge {args._command}: error: a safetensors file is damaged ({_one_line(exc)}); replace it with "
              "an intact copy", file=sys.stderr)
        return 2
    return 0


_OS_HINTS = {errno.ENOSPC: "free some space or choose another --out", errno.EROFS: "choose an --out on a writable disk",
             errno.EACCES: "choose a path you may write (or read)", errno.EPERM: "choose a path you may write (or read)",
             errno.EISDIR: "name a file, not a folder", errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EDQUOT: "free some of your quota or choose another --out"}


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    hint = _OS_HINTS.get(exc.errno or 0, "check the path and the disk")
    return _one_line(f"{where}{what}; {hint}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 600 else text[:600] + " ..."


__all__ = ["COMMANDS", "add_config_arguments", "build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
