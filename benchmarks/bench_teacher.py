"""Teacher benchmark: the evaluator's anchors and the shipped teacher's quality and latency.

    python benchmarks/bench_teacher.py --model builtin --num 48 --out benchmarks/results/teacher.json

Writes one row per (source, split): ground-truth clips and pure noise (the evaluator's anchors), then the
teacher with 50-step DDIM + CFG on validation and held-out prompts, with seconds per video on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from turbo_edge.evaluate import run_eval
from turbo_edge.spec.configs import EvalConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin")
    p.add_argument("--num", type=int, default=48)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/teacher.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for source in ("groundtruth", "noise", args.model):
        for split in ("val", "heldout"):
            start = time.perf_counter()
            r = run_eval(EvalConfig(model=source, steps=args.steps, guidance=args.guidance, prompts=split, num=args.num))
            r.pop("config")
            r["wall_seconds"] = time.perf_counter() - start
            rows.append(r)
            print(json.dumps({k: r[k] for k in ("model", "prompts", "content_acc", "motion_acc", "direction_acc", "all_acc", "fd", "seconds_per_video")}))
    result = {
        "command": "python " + " ".join(sys.argv),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
