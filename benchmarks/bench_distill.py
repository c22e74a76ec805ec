"""Distillation benchmark: the ablation arms at one training budget, each student on the held-out evaluator at
1/2/4/8 steps beside the 50-step CFG teacher, diversity at 1 and 2 steps, and teacher vs 4-step latency.

Standalone script (the library never imports it). Each arm trains with ``turbo-edge distill``'s own code into
``--runs/<arm>`` and resumes from its checkpoint when interrupted; a finished arm is only re-evaluated.

    python benchmarks/bench_distill.py --teacher builtin --steps 1000 --num 48 --threads 2
    python benchmarks/bench_distill.py --arms cd,cd_image --steps 2 --num 2 --out /tmp/d.json   # smoke
    python benchmarks/bench_distill.py --arms cd_latent,cd_vsd --steps 200 --num 48 --merge   # add arms to --out

``--merge`` keeps the arms already in ``--out`` and its teacher quality row when they were measured at the same
budget, prompts and teacher; the teacher's latency is still re-timed in this run (on ``--merge-timing-prompts``
prompts), so each new arm's speedup is a same-run ratio.

Diversity: for each of ``--diversity-prompts`` prompts, ``--diversity-seeds`` clips from different seeds; the
spread is the mean distance of their evaluator clip features from their mean (0 = every seed gives the same clip).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _timing import timed  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent

IMAGE = {"name": "builtin-image", "weight": 1.0, "frames": 2}
VIDEO = {"name": "builtin-video", "weight": 1.0, "frames": 8}
# Arm name -> DistillConfig overrides. "latent" gets its reward path filled in at run time.
ARMS: dict[str, dict[str, Any]] = {
    "cd": {},
    "cd_image": {"rewards": [IMAGE]},
    "cd_image_video": {"rewards": [IMAGE, VIDEO]},
    "cd_image_video_motion": {"rewards": [IMAGE, VIDEO], "motion_guidance": 1.0},
    "cd_latent": {"rewards": [{"name": "latent", "weight": 1.0}]},
    "cd_latent_low": {"rewards": [{"name": "latent", "weight": 0.3}]},
    "cd_vsd": {"vsd_weight": 1.0},
}


def latent_reward(teacher: str, runs: Path, threads: int, steps: int, x0_fraction: float) -> tuple[str, dict[str, Any]]:
    """DOLLAR's latent reward for this teacher's VAE (trained once per ``x0_fraction`` into ``runs``), and its fit."""
    from turbo_edge.core.rewards.train import run_training
    from turbo_edge.spec.configs import RewardTrainConfig

    out = runs / f"latent_reward_x0_{x0_fraction:g}"
    if not (out / "config.json").is_file():
        run_training(RewardTrainConfig(which="latent", teacher=teacher, out=str(out), threads=threads, steps=steps,
                                       x0_fraction=x0_fraction))
    metrics = json.loads((out / "metrics.json").read_text())
    keep = ("target", "samples", "heldback_pearson", "heldback_mse", "fit_mse_end", "train_seconds")
    return str(out), {"x0_fraction": x0_fraction, "steps": steps, **{k: metrics[k] for k in keep if k in metrics}}


def evaluate(model: Any, kind: str, attrs: list, steps: int, seed: int) -> tuple[dict[str, float], list[float]]:
    """Evaluator scores of one clip per prompt (generated one at a time, so each is also a latency sample)."""
    from turbo_edge.core.evaluator import Evaluator
    from turbo_edge.core.sampling import generate_teacher
    from turbo_edge.core.student_sampling import generate_student

    clips, times = [], []
    for i, a in enumerate(attrs):
        start = time.perf_counter()
        if kind == "teacher":
            clip = generate_teacher(model, [a.prompt], steps=steps, guidance=float(model.card.default_guidance), seed=seed + i)
        else:
            clip = generate_student(model, [a.prompt], steps=steps, seed=seed + i)
        times.append(time.perf_counter() - start)
        clips.append(clip[0])
    score = Evaluator().score(np.stack(clips), attrs, split="val").to_dict()
    return {k: score[k] for k in ("content_acc", "colour_acc", "shape_acc", "motion_acc", "all_acc", "consistency", "fd")}, times


def diversity(model: Any, attrs: list, steps: int, seeds: int) -> float:
    from turbo_edge.core.evaluator import Evaluator
    from turbo_edge.core.student_sampling import generate_student

    ev, spreads = Evaluator(), []
    for a in attrs:
        clips = np.concatenate([generate_student(model, [a.prompt], steps=steps, seed=1000 + s) for s in range(seeds)])
        feats = ev.outputs(clips)["clip_features"]
        spreads.append(float(np.linalg.norm(feats - feats.mean(0), axis=1).mean()))
    return float(np.mean(spreads))


def unet_call_ms(model: Any, batch: int, runs: int = 20, warmup: int = 3, w_dim: int | None = None) -> float:
    """Median ms of one UNet call at ``batch`` clips of ``model``'s latent shape (``w_dim``: with a guidance embedding)."""
    import torch

    from turbo_edge.core.sampling import encode_text, latent_shape

    shape = latent_shape(model, None, None, None)
    x = torch.randn((batch, *shape))
    text = encode_text(model, ["a red circle moving left"] * batch)
    t = torch.full((batch,), 500)
    kwargs = {"timestep_cond": torch.zeros(batch, w_dim)} if w_dim else {}
    with torch.no_grad():
        return timed(lambda: model.unet(x, t, encoder_hidden_states=text, **kwargs), warmup, runs)["median_ms"]


def merged_result(path: Path, args: argparse.Namespace, budget: dict[str, int], prompts: dict[str, Any]) -> dict[str, Any]:
    """The earlier result in ``path`` to add arms to; refuses one measured at another budget, prompts or teacher."""
    if not path.is_file():
        raise SystemExit(f"--merge: {path} does not exist; run without --merge first")
    result = json.loads(path.read_text())
    theirs = {"budget": result.get("budget"), "prompts": result.get("prompts"),
              "teacher": {k: result.get("teacher", {}).get(k) for k in ("model", "steps")}}
    ours = {"budget": budget, "prompts": prompts, "teacher": {"model": args.teacher, "steps": args.teacher_steps}}
    if theirs != ours:
        raise SystemExit(f"--merge: {path} was measured with {theirs}, this run uses {ours}; use another --out")
    return result


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> int:
    import torch

    from turbo_edge.core import world
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.distill.train import train
    from turbo_edge.spec.configs import DistillConfig, RewardTrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {list(ARMS)}")
    p.add_argument("--steps", type=int, default=1000, help="training steps per arm (the shared budget)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num", type=int, default=48, help="validation prompts per evaluation")
    p.add_argument("--teacher-steps", type=int, default=50)
    p.add_argument("--student-steps", default="1,2,4,8")
    p.add_argument("--diversity-prompts", type=int, default=4)
    p.add_argument("--diversity-seeds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latent-reward-steps", type=int, default=1000)
    p.add_argument("--latent-x0-fraction", type=float, default=RewardTrainConfig.x0_fraction,
                   help="share of the latent reward's training samples that are the teacher's one-step x0 (0: clean clips only)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "distill_ablation"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distill.json"))
    p.add_argument("--merge", action="store_true", help="add the arms to those already in --out (same budget, prompts, teacher)")
    p.add_argument("--merge-timing-prompts", type=int, default=3, help="with --merge: prompts the teacher is re-timed on")
    args = p.parse_args()
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    attrs = world.prompt_set("val", args.num, seed=0)
    div_attrs = world.prompt_set("val", args.diversity_prompts, seed=1)
    student_steps = [int(s) for s in args.student_steps.split(",")]

    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads, "loadavg_at_start": list(os.getloadavg())}
    budget, prompts = {"steps": args.steps, "batch": args.batch}, {"split": "val", "num": args.num}
    teacher = load_teacher(args.teacher)
    if args.merge:
        result = merged_result(Path(args.out), args, budget, prompts)
        teacher_scores = {m: result["teacher"][m] for m in ("content_acc", "motion_acc")}
        _, times = evaluate(teacher, "teacher", attrs[: args.merge_timing_prompts], args.teacher_steps, seed=0)
        teacher_latency = statistics.median(times)
        result.setdefault("merged_runs", []).append({"command": command, "machine": machine, "arms": arms,
                                                     "teacher_latency_s_median_this_run": teacher_latency})
    else:
        teacher_scores, teacher_times = evaluate(teacher, "teacher", attrs, args.teacher_steps, seed=0)
        teacher_latency = statistics.median(teacher_times)
        result = {
            "command": command,
            "machine": machine,
            "teacher": {"model": args.teacher, "steps": args.teacher_steps, **teacher_scores, "latency_s_median": teacher_latency},
            "budget": budget,
            "prompts": prompts,
            "arms": {},
        }
    for arm in arms:
        overrides = json.loads(json.dumps(ARMS[arm]))
        latent_fit = None
        for r in overrides.get("rewards", []):
            if r["name"] == "latent":
                r["path"], latent_fit = latent_reward(args.teacher, runs, args.threads, args.latent_reward_steps,
                                                      args.latent_x0_fraction)
        cfg = DistillConfig.make(teacher=args.teacher, out=str(runs / arm), steps=args.steps, batch=args.batch, threads=args.threads,
                            checkpoint_every=min(100, args.steps), **overrides)
        start = time.perf_counter()
        student = load_teacher(train(cfg))
        row: dict[str, Any] = {"config": overrides, "train_seconds": time.perf_counter() - start, "steps": {}}
        if latent_fit:
            row["latent_reward"] = latent_fit
        for k in student_steps:
            scores, times = evaluate(student, "student", attrs, k, seed=0)
            row["steps"][str(k)] = {**scores, "latency_s_median": statistics.median(times)}
        row["diversity"] = {str(k): diversity(student, div_attrs, k, args.diversity_seeds) for k in (1, 2) if k in student_steps}
        four = row["steps"].get("4")
        if four:
            row["beats_teacher_at_4_steps"] = {m: four[m] >= teacher_scores[m] for m in ("content_acc", "motion_acc")}
            row["speedup_teacher_over_4_step"] = teacher_latency / four["latency_s_median"]  # same run
        if "unet_calls" not in result:
            # Why the end-to-end ratio is what it is: one CFG step runs the UNet on 2 clips, one student step on 1
            # (plus a guidance embedding). UNet-only ceiling of the 4-step ratio: 50 * t(batch 2) / (4 * t(batch 1)).
            t2 = unet_call_ms(teacher, 2)
            t1 = unet_call_ms(student, 1, w_dim=int(student.card.sampler.w_embedding_dim))
            result["unet_calls"] = {"teacher_cfg_batch2_ms": t2, "student_batch1_ms": t1, "batch2_over_batch1": t2 / t1,
                                    "unet_only_ceiling_50_over_4": args.teacher_steps * t2 / (4 * t1)}
        result["arms"][arm] = row
        print(f"{arm}: " + ", ".join(f"{k}-step content {v['content_acc']:.2f} motion {v['motion_acc']:.2f}" for k, v in row["steps"].items()), flush=True)
        write_json(Path(args.out), result)  # after every arm: an interrupted ablation keeps the arms it finished
    print(f"teacher {args.teacher_steps}-step: content {teacher_scores['content_acc']:.2f} motion {teacher_scores['motion_acc']:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
