"""Data-parallel parity: ``turbo-edge distill --data DATA`` in 2 processes (``accelerate launch``) against 1 process at
the same global batch, and an audit that no sample is read twice in an epoch.

    python benchmarks/bench_ddp.py                       # 26 clips in shards of 3, batch 4, 40 steps: ~10 min on 2 busy cores
    python benchmarks/bench_ddp.py --steps 12 --window 4 --out /tmp/ddp.json   # smoke

1. DATA: ``turbo-edge world export --split train --num N`` then ``turbo-edge data prepare --model TEACHER --shard-size K``
   (several shards per process; an odd shard count and shard sizes that leave each process a short epoch tail).
2. Runs, all ``--read-log --log-every 1 --set 'rewards=[]' --threads 1`` at global ``--batch B``: one process at
   ``--seed`` (the reference); one process at each of ``--spread-seeds`` (the natural spread: other samples in
   another order, other noise, as a second process brings); ``accelerate launch --multi_gpu --num_processes 2`` (gloo on
   the CPU) at ``--seed``, each process taking ``B // 2`` clips a step. Its logged loss is the mean over both
   processes (``core.training.mean_over_ranks``), the global batch's loss as one process logs it.
3. Curves: the per-step loss in windows of ``--window`` steps, their means; a run's difference from the reference is
   the largest relative difference of its window means. The 2-process run sees other samples and noise than the
   reference, so it can only agree in distribution: the tolerance is ``--factor`` times the largest difference between
   any two 1-process runs of different seeds. ``whole_run_mean`` is the same comparison of the all-step means.
4. Reads: every run's read log (``loop.read_log``) through ``train_data.audit_read_log``: no sample read twice in an
   epoch, the processes disjoint and inside their own shards, every finished epoch covered but for the dropped tails.

Writes ``--out`` (default ``benchmarks/results/ddp.json``): the commands, the machine, the window means, the
differences, the tolerance and the pass flags, computed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def window_means(losses: list[float], window: int) -> list[float]:
    """Means of consecutive ``window``-step windows (a short last window is dropped)."""
    return [statistics.fmean(losses[i:i + window]) for i in range(0, len(losses) - window + 1, window)]


def max_rel_diff(curve: list[float], reference: list[float]) -> float:
    """The largest ``|curve - reference| / reference`` over the windows."""
    return max(abs(a - b) / abs(b) for a, b in zip(curve, reference, strict=True))


def compare(curves: dict[str, list[float]], reference: str, spread: list[str], candidate: str, factor: float) -> dict[str, Any]:
    """The candidate's difference from the reference against ``factor`` times the largest seed-to-seed difference
    (of every pair of 1-process runs, ``"a vs b"`` relative to ``b``)."""
    ones = [reference, *spread]
    pairs = {f"{a} vs {b}": max_rel_diff(curves[a], curves[b]) for a, b in itertools.combinations(ones, 2)}
    seed_to_seed = max(pairs.values())
    diff = max_rel_diff(curves[candidate], curves[reference])
    return {"reference": reference, "candidate": candidate, "candidate_max_rel_diff": diff, "seed_to_seed_max_rel_diff": pairs,
            "seed_to_seed_max": seed_to_seed, "factor": factor, "tolerance": factor * seed_to_seed, "pass": diff <= factor * seed_to_seed}


def run(cmd: list[str], env: dict[str, str], commands: list[str]) -> float:
    root = f"{ROOT}{os.sep}"  # paths under the checkout shown relative to it, as a user re-runs them from its root
    shown = ["python" if c == sys.executable else c.replace(root, "") for c in cmd]
    commands.append(shlex.join(shown))
    print("+", commands[-1], flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {commands[-1]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def losses(out: Path, steps: int) -> list[float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    if [r["step"] for r in rows] != list(range(1, steps + 1)):
        raise SystemExit(f"{out / 'log.jsonl'} does not log every step 1..{steps}")
    return [float(r["loss"]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin")
    p.add_argument("--num", type=int, default=26, help="world clips in the DATA")
    p.add_argument("--shard-size", type=int, default=3)
    p.add_argument("--batch", type=int, default=4, help="global batch (each of the 2 processes takes half)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spread-seeds", default="1,2", help="1-process seeds measuring the seed-to-seed spread")
    p.add_argument("--factor", type=float, default=1.5, help="tolerance = factor x the largest seed-to-seed difference")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--work", default=str(ROOT / "build" / "bench_ddp"), help="DATA and run directories (emptied first)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ddp.json"))
    args = p.parse_args(argv)
    if args.batch % 2 or args.steps < 2 * args.window:
        p.error("--batch must be even (2 processes share it) and --steps at least 2 windows")
    from turbo_edge.bench.common import machine_info
    from turbo_edge.core import train_data
    from turbo_edge.core.prepared import PreparedData

    machine = machine_info(args.threads)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": str(args.threads)}
    cli = [sys.executable, "-m", "turbo_edge.cli"]
    commands: list[str] = []
    # 1. The DATA.
    run([*cli, "world", "export", "--split", "train", "--num", str(args.num), "--out", str(work / "videos"), "--seed", "5"], env, commands)
    data = work / "data"
    run([*cli, "data", "prepare", "--source", str(work / "videos"), "--model", args.teacher, "--out", str(data),
         "--shard-size", str(args.shard_size)], env, commands)
    # 2. The runs.
    distill = ["distill", "--teacher", args.teacher, "--data", str(data), "--steps", str(args.steps), "--batch", str(args.batch),
               "--log-every", "1", "--checkpoint-every", str(args.steps), "--threads", str(args.threads), "--read-log", "--set", "rewards=[]"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "turbo_edge.cli"]
    seeds = [int(s) for s in args.spread_seeds.split(",") if s.strip()]
    runs = {f"1proc_seed{args.seed}": (cli, 1, args.seed), **{f"1proc_seed{s}": (cli, 1, s) for s in seeds},
            f"2proc_seed{args.seed}": (launch, 2, args.seed)}
    rows: dict[str, dict[str, Any]] = {}
    for name, (prefix, procs, seed) in runs.items():
        out = work / name
        seconds = run([*prefix, *distill, "--out", str(out), "--seed", str(seed)], env, commands)
        curve = losses(out, args.steps)
        source = train_data.DataSource(PreparedData(data), seed=seed)
        audit = train_data.audit_read_log(source, train_data.load_read_log(out), args.batch // procs)
        rows[name] = {"processes": procs, "seed": seed, "per_process_batch": args.batch // procs, "seconds": seconds,
                      "loss_mean": statistics.fmean(curve), "window_means": window_means(curve, args.window), "loss": curve, "reads": audit}
    # 3. The curves.
    reference, candidate = f"1proc_seed{args.seed}", f"2proc_seed{args.seed}"
    spread = [f"1proc_seed{s}" for s in seeds]
    curves = compare({k: r["window_means"] for k, r in rows.items()}, reference, spread, candidate, args.factor)
    whole = compare({k: [r["loss_mean"]] for k, r in rows.items()}, reference, spread, candidate, args.factor)  # one window: all steps
    # 4. The reads.
    reads_ok = {k: r["reads"]["finished_epochs"] >= 1 and all(r["reads"][f] for f in
                ("no_repeats", "ranks_disjoint", "ranks_in_own_shards", "finished_epochs_covered")) for k, r in rows.items()}
    result = {
        "command": shlex.join(["python", os.path.relpath(Path(__file__).resolve(), ROOT), *(sys.argv[1:] if argv is None else argv)]),
        "commands": commands,
        "machine": machine,
        "settings": {"teacher": args.teacher, "clips": len(PreparedData(data)), "shards": len(PreparedData(data).shards),
                     "shard_size": args.shard_size, "global_batch": args.batch, "steps": args.steps, "window": args.window},
        "runs": rows,
        "curves": curves,
        "whole_run_mean": whole,
        "reads_pass": reads_ok,
        "pass": {"curves_within_tolerance": curves["pass"], "no_sample_read_twice_in_an_epoch": all(reads_ok.values())},
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        print(f"{name}: window means {[round(v, 4) for v in r['window_means']]}, {r['seconds']:.0f} s, reads ok {reads_ok[name]}")
    print(f"2-process vs 1-process: max rel diff {curves['candidate_max_rel_diff']:.3f}, tolerance {curves['tolerance']:.3f} "
          f"({args.factor} x seed-to-seed {curves['seed_to_seed_max']:.3f}): pass {curves['pass']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
