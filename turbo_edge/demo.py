"""``turbo-edge demo``: the whole chain on the embedded default, then one side-by-side table.

Stages: a short distillation of the teacher and a short pruning recovery (so both stages visibly run; the
``full`` preset runs them at the shipped students' length), fp32 + int8 bundles of the student and the pruned
student, then one row per (model, runtime, precision, steps): median latency per video and the held-out
evaluator's quality on the same clips. Rows use the shipped students (``builtin-student``,
``builtin-pruned``) when the package has them, else the ones this run trained, and say which.

Every stage's output lives under ``out`` in a directory named by the hash of what decides it, with a
``done.json`` marker written last, so an interrupted demo re-run reuses what finished; measured rows are
cached the same way (keyed by the artifact they measured).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge.core import world
from turbo_edge.core.checkpoint import config_hash
from turbo_edge.core.evaluator import Evaluator
from turbo_edge.core.pipeline_io import ModelLayoutError, load_teacher, model_family, resolve_model_path
from turbo_edge.core.sampling import generate_teacher, latent_shape
from turbo_edge.core.student_sampling import generate_student
from turbo_edge.distill.train import train
from turbo_edge.evaluate import model_lead_in
from turbo_edge.export import export_bundle
from turbo_edge.export.bundle import model_hash
from turbo_edge.export.tensorrt_build import TensorRTUnavailable, build_engines, detect_gpu, load_tensorrt
from turbo_edge.prune.train import prune
from turbo_edge.runtime.pipeline import Pipeline
from turbo_edge.runtime.video import write_video
from turbo_edge.spec.backends import GPU_BACKENDS
from turbo_edge.spec.bundle import is_bundle, load_bundle
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import DemoConfig, DistillConfig, EngineConfig, ExportConfig, PruneConfig
from turbo_edge.spec.host import cpu_peak_flops
from turbo_edge.spec.outputs import claim_run_dir

log = logging.getLogger(__name__)

DONE = "done.json"
# Runtime backends as the table names them; the GPU ones run only where a GPU is (never on this project's CPU machine).
BACKEND_LABELS = {"ort-cpu": "onnxruntime", "openvino": "openvino", "ort-cuda": "onnxruntime-cuda", "tensorrt": "tensorrt"}


# ------------------------------------------------------------------ cached stages


def cached(out: Path, stage: str, key: dict[str, Any], build: Callable[[Path], Path]) -> Path:
    """Run ``build(workdir)`` once per ``key``: its result path is recorded in ``workdir/done.json``, written last."""
    workdir = out / f"{stage}-{config_hash(key)}"
    marker = workdir / DONE
    if marker.is_file():
        result = Path(json.loads(marker.read_text())["result"])
        if result.exists():
            print(f"[demo] {stage}: reusing {result}")
            return result
    print(f"[demo] {stage}: running in {workdir}")
    result = build(workdir)  # the stage claims workdir as its own run directory (resumable)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "key.json").write_text(json.dumps(key, indent=2, default=str) + "\n")
    marker.write_text(json.dumps({"result": str(Path(result).resolve()), "time": time.time()}) + "\n")
    return result


def _shipped(alias: str) -> Path | None:

    try:
        path = resolve_model_path(alias)
    except (ModelLayoutError, FileNotFoundError, ValueError):
        return None
    return path if (path / "model_index.json").is_file() else None


def _stage_config(base: Any, cfg: DemoConfig, fields: dict[str, Any], steps_setting: str) -> Any:
    """``base`` with ``fields`` and the preset's steps / batch / dataset size, checkpointing at least once."""
    fields = dict(fields)
    for name, field in ((steps_setting, "steps"), ("batch", "batch"), ("dataset_clips", "dataset_clips")):
        if cfg.setting(name) is not None:
            fields[field] = cfg.setting(name)
    config = base.replace(**fields)
    return config.replace(checkpoint_every=min(config.loop.steps, config.loop.checkpoint_every))


def distill_stage(cfg: DemoConfig, out: Path, shipped: Path | None) -> Path:

    base = _shipped_training_config(cfg.model("student"), DistillConfig) if cfg.preset == "full" else DistillConfig()
    fields: dict[str, Any] = dict(teacher=cfg.model("teacher"), threads=cfg.threads, seed=cfg.seed)
    if cfg.preset == "quick" and shipped is not None:  # a top-up of the shipped student, not a fresh start
        fields.update(init_student=str(shipped), w_embedding_dim=read_card(shipped).sampler.w_embedding_dim)
    dc = _stage_config(base, cfg, fields, "distill_steps")
    key = {"stage": "distill", **dc.training_hash_fields(), "steps": dc.loop.steps}
    if dc.init_student:

        key["init_student_hash"] = model_hash(Path(dc.init_student))
    return cached(out, "distill", key, lambda d: train(dc.replace(out=str(d))))


def prune_stage(cfg: DemoConfig, out: Path, student: Path) -> Path:

    base = _shipped_training_config(cfg.model("pruned"), PruneConfig) if cfg.preset == "full" else PruneConfig()
    # A UNet's VDMini rule is structural (no table needed: skip it); a DiT's ranks blocks by measured importance.
    measured = model_family(student).denoiser.name != "unet3d"
    fields = dict(student=str(student), threads=cfg.threads, seed=cfg.seed, importance_clips=2 if measured else 0)
    pc = _stage_config(base, cfg, fields, "prune_steps")
    key = {"stage": "prune", **pc.training_hash_fields(), "steps": pc.loop.steps, "student_hash": model_hash(student)}
    return cached(out, "prune", key, lambda d: prune(pc.replace(out=str(d))))


def _shipped_training_config(alias: str, config_cls: Any) -> Any:
    """The config the shipped model was trained with (its model card's lineage), for ``--preset full``."""
    path = _shipped(alias)
    if path is None:
        raise FileNotFoundError(f"--preset full reproduces the shipped {alias}, which this package does not have yet")
    lineage = read_card(path).lineage
    if lineage is None or lineage.config.get("kind") != config_cls.KIND:
        raise ValueError(f"{path}/turbo_edge.json does not record the {config_cls.KIND} config it was trained with")
    return config_cls.from_dict(lineage.config)


def export_stage(cfg: DemoConfig, out: Path, model: Path, name: str) -> Path:

    bundle = out / "bundles" / name
    # A model that carries a tiny decoder (the shipped students do, `decoder train` adds one) exports it as a bundle variant.
    decoders = ("full", "tiny") if "tiny" in read_card(model).decoders else ("full",)
    ec = ExportConfig(model=str(model), out=str(bundle), precisions=tuple(cfg.precisions), threads=cfg.threads,
                      openvino_check=False, overwrite=True, int8_calibration_prompts=cfg.setting("calibration_prompts"), decoders=decoders)
    return export_bundle(model, bundle, ec)  # reuses an up-to-date bundle by its own hash


# ------------------------------------------------------------------ measured rows


@dataclasses.dataclass
class RowSpec:
    row: str
    stage: str  # teacher | student | pruned
    backend: str  # pytorch | onnxruntime | openvino
    precision: str
    steps: int
    source: Path  # model directory or bundle
    decoder: str | None = None  # a bundle's decoder variant (tiny); None: the bundle's default (full)


def _time_clips(generate_one: Callable[[str, int], tuple[np.ndarray, dict[str, float]]], prompts: list[str]) -> tuple[np.ndarray, list[float], dict[str, float]]:
    """One clip per prompt (seeded by its index), each timed; one untimed warm-up call first."""
    generate_one(prompts[0], 10_000)
    clips, times, stages = [], [], {}
    for i, p in enumerate(prompts):
        start = time.perf_counter()
        clip, timings = generate_one(p, i)
        times.append(time.perf_counter() - start)
        clips.append(clip)
        for k, v in timings.items():
            stages[k] = stages.get(k, 0.0) + v
    return np.stack(clips), times, {k: 1e3 * v / len(prompts) for k, v in stages.items()}


def _generator(spec: RowSpec, threads: int) -> Callable[[str, int], tuple[np.ndarray, dict[str, float]]]:
    if spec.backend == "pytorch":
        import torch


        torch.set_num_threads(threads)
        model = load_teacher(spec.source)
        if spec.stage == "teacher":

            guidance = float(model.card.default_guidance)
            return lambda p, seed: (generate_teacher(model, [p], steps=spec.steps, guidance=guidance, seed=seed)[0], {})

        return lambda p, seed: (generate_student(model, [p], steps=spec.steps, seed=seed)[0], {})

    backend = {label: key for key, label in BACKEND_LABELS.items()}[spec.backend]
    pipe = Pipeline.from_bundle(spec.source, backend=backend, precision=spec.precision, threads=threads, decoder=spec.decoder)

    def run(p: str, seed: int) -> tuple[np.ndarray, dict[str, float]]:
        result = pipe.run([p], steps=spec.steps, seed=seed)
        return result.frames[0], result.session_seconds

    return run


def measure_row(spec: RowSpec, attrs: list[world.Attributes], cfg: DemoConfig, out: Path) -> dict[str, Any]:

    if (spec.source / "model_index.json").is_file():
        source_hash = model_hash(spec.source)
    else:  # a bundle: the sha256 of every file its manifest lists
        source_hash = config_hash(json.loads((spec.source / "manifest.json").read_text())["files"])
    spec_key = {k: v for k, v in dataclasses.asdict(spec).items() if not (k == "decoder" and v is None)}  # the keys rows had before decoders
    key = {"row": spec_key | {"source": source_hash}, "prompts": [a.prompt for a in attrs],
           "threads": cfg.threads, "seed": cfg.seed}
    cache = out / "rows" / f"{config_hash(key)}.json"
    if cache.is_file():
        print(f"[demo] row {spec.row} {spec.backend} {spec.precision}: reusing {cache.name}")
        return json.loads(cache.read_text())
    print(f"[demo] row {spec.row} {spec.backend} {spec.precision}: generating {len(attrs)} clips")
    clips, times, stages = _time_clips(_generator(spec, cfg.threads), [a.prompt for a in attrs])
    score = Evaluator().score(clips[:, model_lead_in(spec.source):], attrs, split="val").to_dict()  # a DiT's lead-in frame is skipped
    row = {
        "row": spec.row, "stage": spec.stage, "backend": spec.backend, "precision": spec.precision, "steps": spec.steps, "decoder": spec.decoder or "full",
        "latency_ms": 1e3 * statistics.median(times), "latency_ms_min": 1e3 * min(times),
        "content_acc": score["content_acc"], "motion_acc": score["motion_acc"], "fd": score["fd"],
        "direction_acc": score["direction_acc"], "consistency": score.get("consistency"), "n_videos": len(times), "source": str(spec.source),
        "stage_latency_ms": stages or None,
    }
    clip_dir = out / "clips" / config_hash(key)

    row["clips"] = {}
    for i, a in enumerate(attrs[: cfg.clips_per_row]):
        path = clip_dir / f"{i:02d}.gif"
        write_video(clips[i], path, overwrite=True)  # inside its own work directory
        row["clips"][a.prompt] = str(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row, indent=2) + "\n")
    return row


def unet_flops(model_dir: Path, batch: int) -> float:
    """FLOPs of one denoiser call, a UNet's or a DiT's (``core.flops.count_flops``: matmuls, convolutions and attention,
    the bulk of the work), at the model's own clip and text length."""
    import torch

    from turbo_edge.core.flops import count_flops
    from turbo_edge.core.sampling import encode_text

    model = load_teacher(model_dir)
    c, f, h, w = latent_shape(model, None, None, None)
    geo = model.family.geometry(model.denoiser)
    guidance = torch.zeros(batch, geo.guidance_dim) if geo.guidance_dim else None
    text = torch.zeros_like(encode_text(model, [""])).expand(batch, -1, -1)
    sample, timestep = torch.zeros(batch, c, f, h, w), torch.full((batch,), 500)
    with torch.no_grad():
        return float(count_flops(lambda: model.denoise(sample, timestep, text, guidance)))


def cpu_peak_gflops(threads: int) -> dict[str, Any]:
    """Theoretical fp32 peak of ``threads`` cores (``spec.host.cpu_peak_flops``: FLOP per cycle from the CPU's flags x
    cores x the reported clock; its assumptions in ``formula``)."""
    peak = cpu_peak_flops("fp32", cores=threads)
    if peak is None:
        return {"peak_gflops": None, "formula": "unknown: no CPU flags or clock in /proc/cpuinfo"}
    return {"peak_gflops": peak["flops_per_s"] / 1e9, "formula": peak["basis"]}


def plan_rows(cfg: DemoConfig, teacher: Path, student: Path, pruned: Path, bundles: dict[str, Path], labels: dict[str, str]) -> list[RowSpec]:
    rows = [RowSpec(f"teacher {cfg.teacher_steps}-step CFG", "teacher", "pytorch", "fp32", cfg.teacher_steps, teacher)]
    for stage, model in (("student", student), ("pruned", pruned)):
        steps_list = cfg.student_steps if stage == "student" else (cfg.runtime_steps,)
        for steps in steps_list:
            rows.append(RowSpec(f"{labels[stage]} {steps}-step", stage, "pytorch", "fp32", steps, model))
        for backend in cfg.backends:
            name = BACKEND_LABELS[backend]
            for precision in cfg.precisions:
                if precision == "fp16" and backend not in GPU_BACKENDS:
                    continue  # fp16 graphs are for GPUs; on a CPU they are slower than fp32 (measured in export.json)
                rows.append(RowSpec(f"{labels[stage]} {cfg.runtime_steps}-step", stage, name, precision, cfg.runtime_steps, bundles[stage]))
        bundle = bundles[stage]
        if is_bundle(bundle) and "tiny" in load_bundle(bundle, verify=False, runnable=False).decoders[0]:  # the same runs, tiny decoder
            rows += [dataclasses.replace(r, row=f"{r.row} tiny dec", decoder="tiny") for r in rows if r.source == bundle]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':37s} {'runtime':12s} {'prec':5s} {'steps':>5s} {'ms/video':>9s} {'speedup':>8s} {'content':>8s} {'motion':>7s} {'dir':>5s} {'FD':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['row'][:37]:37s} {r['backend']:12s} {r['precision']:5s} {r['steps']:5d} {r['latency_ms']:9.1f} "
            f"{r['speedup']:7.1f}x {r['content_acc']:8.2f} {r['motion_acc']:7.2f} {r.get('direction_acc', float('nan')):5.2f} {r['fd']:7.0f}"
        )
    return "\n".join(lines)


def check_backends(cfg: DemoConfig) -> None:
    """Refuse GPU backends this machine cannot run before any stage starts (not after an hour of training)."""
    if "tensorrt" in cfg.backends:

        try:
            load_tensorrt()
            detect_gpu()
        except TensorRTUnavailable as exc:
            raise ValueError(f"--backends tensorrt: {exc}; or run the CPU backends (ort-cpu, openvino)") from exc
    if "ort-cuda" in cfg.backends:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("--backends ort-cuda: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu on a "
                             "machine with an NVIDIA GPU); or run the CPU backends (ort-cpu, openvino)")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:

    check_backends(cfg)
    out = claim_run_dir(cfg.out, "demo_config.json")
    cfg.save(out / "demo_config.json")
    start = time.perf_counter()
    teacher = resolve_model_path(cfg.model("teacher"))
    shipped_student, shipped_pruned = _shipped(cfg.model("student")), _shipped(cfg.model("pruned"))
    wall: dict[str, float] = {}  # seconds per stage of this invocation (a reused stage takes ~0)

    def staged(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - t0
        return value

    distilled = staged("distill", lambda: distill_stage(cfg, out, shipped_student))
    student = shipped_student or distilled
    pruned_run = staged("prune", lambda: prune_stage(cfg, out, student))
    pruned = shipped_pruned or pruned_run
    labels = {
        "student": "student (shipped)" if shipped_student else f"student (demo, {cfg.setting('distill_steps')} st)",
        "pruned": "pruned (shipped)" if shipped_pruned else f"pruned (demo, {cfg.setting('prune_steps')} st)",
    }
    bundles = staged("export", lambda: {"student": export_stage(cfg, out, student, "student"), "pruned": export_stage(cfg, out, pruned, "pruned")})
    if "tensorrt" in cfg.backends:  # GPU only: engines from the bundles' fp16 / int8 graphs (reused when present)

        for bundle in bundles.values():
            build_engines(bundle, EngineConfig(bundle=str(bundle), precisions=tuple(cfg.precisions)))
    attrs = world.prompt_set("val", cfg.setting("num_prompts"), seed=cfg.seed)
    rows = [staged(f"rows_{spec.stage}", lambda spec=spec: measure_row(spec, attrs, cfg, out))
            for spec in plan_rows(cfg, teacher, student, pruned, bundles, labels)]
    teacher_ms = rows[0]["latency_ms"]
    flops = {"teacher": unet_flops(teacher, 2), "student": unet_flops(student, 1), "pruned": unet_flops(pruned, 1)}
    peak = cpu_peak_gflops(cfg.threads)
    for r in rows:
        r["speedup"] = teacher_ms / r["latency_ms"]
        r["unet_gflops_per_step"] = flops[r["stage"]] / 1e9
        r["achieved_gflops"] = flops[r["stage"]] * r["steps"] / (r["latency_ms"] / 1e3) / 1e9  # UNet work over the whole video time
        if peak["peak_gflops"]:
            r["fraction_of_peak"] = r["achieved_gflops"] / peak["peak_gflops"]
    stage_latency = [
        {"row": f"{r['row']} {r['backend']} {r['precision']}", "text_encoder_ms": r["stage_latency_ms"].get("text_encoder", 0.0),
         "unet_step_ms": r["stage_latency_ms"].get("unet", 0.0) / r["steps"], "vae_ms": r["stage_latency_ms"].get("vae_decoder", 0.0)}
        for r in rows if r.get("stage_latency_ms")
    ]
    result = {
        "command": f"turbo-edge demo --preset {cfg.preset}" + (f" --family {cfg.family}" if cfg.family != "unet" else ""),
        "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(), "threads": cfg.threads, **peak},
        "seconds": time.perf_counter() - start,
        "stage_seconds": wall,
        "stages": {"distilled": str(distilled), "pruned_run": str(pruned_run), "student": str(student), "pruned": str(pruned),
                   "bundles": {k: str(v) for k, v in bundles.items()}},
        "rows": rows,
        "stage_latency": stage_latency,
        "config": cfg.to_dict(),
    }
    (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    clips_index = {"prompts": [a.prompt for a in attrs[: cfg.clips_per_row]],
                   "rows": {f"{r['row']} {r['backend']} {r['precision']}": {p: str(Path(c).relative_to(out)) for p, c in r["clips"].items()} for r in rows}}
    (out / "index.json").write_text(json.dumps(clips_index, indent=2) + "\n")
    print(format_table(rows))
    print("[demo] seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in wall.items()))
    print(f"[demo] wrote {out / 'demo.json'} ({result['seconds']:.0f} s); render it with: turbo-edge report --results {out} --clips {out}")
    return result
