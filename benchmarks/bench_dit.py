"""The DiT family end to end on the world: the 50-step CFG teacher, its consistency student at 1/2/4 steps, and the
VDMini-pruned student, each on the held-out world evaluator; writes ``dit_quality.json`` and ``dit_prune.json``.

Standalone script (the library never imports it). Each stage runs turbo-edge's own code into ``--runs/<stage>`` and
resumes from its checkpoint when interrupted; a finished stage is only re-evaluated. ``dit_quality.json`` is written
after the teacher's row (``complete: false``) and again with the student's.

    python benchmarks/bench_dit.py --teacher builtin-dit --distill-steps 2000 --prune-steps 1000 --num 192 --threads 2
    python benchmarks/bench_dit.py --teacher builtin-dit --num 192 --threads 2 --teacher-only     # the teacher's row alone
    python benchmarks/bench_dit.py --teacher builtin-dit --student builtin-dit-student --pruned builtin-dit-pruned \
        --num 192 --threads 2 --runs /work/runs/bench_dit      # the shipped models' rows (importance from --runs/prune)
    python benchmarks/bench_dit.py --teacher /work/runs/dit_teacher/dataset/vae_model --distill-steps 2 --prune-steps 2 \
        --num 4 --teacher-steps 4 --runs /tmp/dit_runs --out-dir /tmp/dit_results      # smoke (an untrained transformer)

The student and the pruned student train on a DATA the teacher's own autoencoder prepared from the world (``--data``,
or ``world export --lead-in`` + ``data prepare`` into ``--runs/data``). Quality claims come from the held-out
evaluator (``turbo_edge.evaluate``), never from a reward used in training. The issue's gates are computed and
written beside the numbers (``gates``), whatever they say.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _eval(model: str, steps: int | None, args: argparse.Namespace) -> dict[str, Any]:
    from turbo_edge.evaluate import quality_row, run_eval
    from turbo_edge.spec.configs.apps import EvalConfig

    return quality_row(run_eval(EvalConfig.make(model=model, steps=steps, prompts="val", num=args.num, seed=args.seed, batch_size=args.batch_size)))


def _data(args: argparse.Namespace) -> str:
    """A DATA of world clips made for the teacher's autoencoder (with the card's lead-in)."""
    if args.data:
        return args.data
    from turbo_edge.core.pipeline_io import load_teacher, resolve_model_path
    from turbo_edge.core.world_export import world_data

    teacher = load_teacher(args.teacher)
    return str(world_data(str(resolve_model_path(args.teacher)), args.data_clips, args.seed, Path(args.runs) / "data_work",
                          lead_in=teacher.lead_in_frames))


def _lineage(model: str) -> dict[str, Any]:
    """Where the evaluated teacher came from (its card's stage and training step), so a row names the weights it read."""
    from turbo_edge.core.pipeline_io import resolve_model_path
    from turbo_edge.spec.card import read_card

    lineage = read_card(resolve_model_path(model)).lineage
    return {"stage": lineage.stage, "step": lineage.step} if lineage is not None else {}


def _write_quality(quality: dict[str, Any], out_dir: Path) -> None:
    """``dit_quality.json`` with the rows measured so far and the issue's gates over them (a gate whose rows are not
    measured yet is absent, not false)."""
    rows = quality["rows"]
    gates = {"teacher_content_motion_ge_0.9": rows["teacher"]["content"] >= 0.9 and rows["teacher"]["motion"] >= 0.9}
    if "student_4" in rows:
        t4, teacher = rows["student_4"], rows["teacher"]
        gates["student_4_within_1_point_of_teacher"] = t4["content"] >= teacher["content"] - 0.01 and t4["motion"] >= teacher["motion"] - 0.01
    quality["gates"] = gates
    (out_dir / "dit_quality.json").write_text(json.dumps(quality, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="builtin-dit")
    ap.add_argument("--data", default="", help="a DATA prepared for the teacher (default: the world, prepared into --runs)")
    ap.add_argument("--data-clips", type=int, default=4096)
    ap.add_argument("--runs", default="runs/bench_dit")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--num", type=int, default=192, help="validation prompts per evaluated row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--distill-steps", type=int, default=2000)
    ap.add_argument("--prune-steps", type=int, default=1000)
    ap.add_argument("--remove-count", type=int, default=2, help="transformer blocks the VDMini rule removes")
    ap.add_argument("--batch", type=int, default=16, help="clips per distillation / recovery step")
    ap.add_argument("--init-student", default="", help="top up this student (distilled earlier from --teacher) instead of starting from the teacher")
    ap.add_argument("--rewards", default="[]", help='distillation rewards, JSON as DistillConfig takes them, e.g. '
                                                    '[{"name":"builtin-image","weight":1.0,"frames":2},{"name":"builtin-video","weight":1.0,"frames":8}]')
    ap.add_argument("--prune-rewards", default="[]", help="rewards during pruning recovery, JSON as --rewards")
    ap.add_argument("--init-pruned", default="", help="continue recovery from this pruned student (pruned earlier from --student): "
                                                     "its plan is replayed, --prune-steps more steps train it; the importance table "
                                                     "is read from its run directory")
    ap.add_argument("--mca-weight", type=float, default=None, help="the recovery's MCA weight (default: PruneConfig's); a top-up's "
                                                                     "discriminator starts untrained, so 0 there")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--student-only", action="store_true", help="stop after the student rows (no pruning)")
    ap.add_argument("--teacher-only", action="store_true", help="stop after the teacher's row")
    ap.add_argument("--student", default="", help="evaluate this student (e.g. the shipped builtin-dit-student) instead of distilling one")
    ap.add_argument("--pruned", default="", help="evaluate this pruned student (e.g. builtin-dit-pruned) instead of pruning --student; "
                                                 "its importance table is read from --runs/prune")
    args = ap.parse_args()

    import torch

    from turbo_edge.distill.train import train
    from turbo_edge.prune.train import prune
    from turbo_edge.spec.configs import DistillConfig, PruneConfig
    from turbo_edge.spec.host import cpu_model_name

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu_model_name(), "machine": platform.machine(), "torch_threads": torch.get_num_threads()}
    # The teacher's row first, written at once: the student's distillation behind it takes hours on a CPU.
    rows: dict[str, Any] = {"teacher": {**_eval(args.teacher, args.teacher_steps, args), "sampler": f"{args.teacher_steps}-step flow Euler + CFG"}}
    quality = {
        "kind": "dit_quality", "teacher": args.teacher, "teacher_lineage": _lineage(args.teacher), "num_prompts": args.num, "split": "val",
        "distill_steps": args.distill_steps, "rows": rows, "machine": machine, "complete": False,
        "command": "python benchmarks/bench_dit.py " + " ".join(sys.argv[1:]),
    }
    _write_quality(quality, out_dir)
    if args.teacher_only:
        return
    data = "" if args.student and (args.pruned or args.student_only) else _data(args)
    common = {"threads": args.threads, "batch": args.batch}
    t0 = time.time()
    if args.student:
        student = args.student
        quality.pop("distill_steps")  # distilled elsewhere: its card's lineage says how
        quality.update(student=student, student_lineage=_lineage(student))
    else:
        student = train(DistillConfig.make(teacher=args.teacher, data=data, out=str(runs / "distill"), steps=args.distill_steps,
                                           rewards=json.loads(args.rewards), init_student=args.init_student, checkpoint_every=max(1, min(200, args.distill_steps)), **common))
        quality.update(data=data, distill_seconds=round(time.time() - t0, 1))
    for steps in (1, 2, 4):
        rows[f"student_{steps}"] = {**_eval(str(student), steps, args), "sampler": f"{steps}-step consistency"}
    quality["complete"] = True
    _write_quality(quality, out_dir)
    t4 = rows["student_4"]
    if args.student_only:
        return
    t0 = time.time()
    prune_rewards = json.loads(args.prune_rewards)
    if args.pruned:
        from turbo_edge.core.pipeline_io import resolve_model_path

        pruned = resolve_model_path(args.pruned)
    else:
        pruned = prune(PruneConfig.make(student=str(student), data=data, out=str(runs / "prune"), steps=args.prune_steps,
                                        remove_count=args.remove_count, checkpoint_every=max(1, min(200, args.prune_steps)),
                                        rewards=prune_rewards, init_pruned=args.init_pruned,
                                        **({} if args.mca_weight is None else {"mca_weight": args.mca_weight}), **common))
    prune_seconds = time.time() - t0
    plan = json.loads((pruned / "pruning_plan.json").read_text())
    table_dir = Path(args.init_pruned).parent if args.init_pruned else runs / "prune"  # a prune output's run directory holds its table
    table = json.loads((table_dir / "importance.json").read_text())
    prows = {"student_4": t4, "pruned_4": {**_eval(str(pruned), 4, args), "sampler": "4-step consistency"}}
    for steps in (1, 2):
        prows[f"pruned_{steps}"] = {**_eval(str(pruned), steps, args), "sampler": f"{steps}-step consistency"}
    details = json.loads((pruned / "turbo_edge.json").read_text())["lineage"]["details"]
    result = {
        "kind": "dit_prune", "student": str(student), "plan": {"rule": plan["rule"], "removed": plan["removed"]},
        "importance": [{k: u[k] for k in ("name", "content_cost", "motion_cost", "motion_share")} for u in table["units"]],
        "params_student": details["params_student"], "params_pruned": details["params_pruned"],
        "prune_steps": args.prune_steps, "prune_rewards": prune_rewards, "init_pruned": args.init_pruned or None,
        "prune_seconds": None if args.pruned else round(prune_seconds, 1), "pruned_model": str(args.pruned or pruned), "rows": prows, "machine": machine,
        "gates": {"pruned_4_within_1_point_of_student": prows["pruned_4"]["content"] >= t4["content"] - 0.01
                  and prows["pruned_4"]["motion"] >= t4["motion"] - 0.01},
        "command": quality["command"],
    }
    (out_dir / "dit_prune.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
