"""The teacher's UNet phase through the world DATA against the in-memory encode it replaced.

Runs ``teacher.train.world_latents`` (world export -> data prepare for the run's autoencoder -> shards read back in
clip order) and the last in-memory code's ``encode_world`` (taken from git, commit c0c2d1a) on the same clips with the
same autoencoder, and compares latents and captions.

    python benchmarks/check_teacher_world_data.py --clips 16384 --json benchmarks/results/teacher_data.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OLD_COMMIT = "c0c2d1a"  # the last commit whose teacher encoded the world in memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1024, help="training clips (the teacher recipe's dataset_clips is 16384)")
    parser.add_argument("--work", default="build/teacher_world_data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="write the record here (default: stdout only)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from turbo_edge.bench.common import machine_info
    from turbo_edge.core.models import TinyTeacherSpec
    from turbo_edge.spec.configs import TeacherTrainConfig
    from turbo_edge.teacher.train import _load_vae, _tokenizer, world_latents

    machine = machine_info(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    old_file = work / "old_data.py"
    root = Path(__file__).resolve().parents[1]
    old_file.write_text(subprocess.run(["git", "-C", str(root), "show", f"{OLD_COMMIT}:turbo_edge/core/data.py"], check=True,
                                       capture_output=True, text=True).stdout)
    spec_ = importlib.util.spec_from_file_location("old_data", old_file)
    old = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(old)

    cfg = TeacherTrainConfig(out=str(work / "run"), init_from="builtin", phases=("unet",), dataset_clips=args.clips)
    spec = TinyTeacherSpec()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    vae = _load_vae(cfg, spec)
    start = time.perf_counter()
    new, captions = world_latents(cfg, spec, vae, _tokenizer(cfg, spec))
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    direct, labels = old.encode_world(vae, args.clips, cfg.seed, work / "in_memory")
    memory_s = time.perf_counter() - start
    diff = np.abs(new.astype(np.float32) - direct.astype(np.float32))
    command = f"python benchmarks/check_teacher_world_data.py --clips {args.clips}" + (f" --json {args.json}" if args.json else "")
    record = {"note": "The teacher's UNet-phase data: world export -> data prepare for the run's autoencoder (the builtin teacher's, "
                      f"as a warm start from builtin uses), read back in clip order, against encode_world of commit {OLD_COMMIT} "
                      "(the in-memory path it replaced) on the same clips.",
              "command": command, "machine": machine, "clips": args.clips, "identical_fraction": float((new == direct).mean()),
              "max_abs": float(diff.max()), "captions_equal": captions == old.prompts_for(labels), "world_data_s": round(data_s, 1),
              "in_memory_encode_s": round(memory_s, 1), "old_commit": OLD_COMMIT}
    text = json.dumps(record, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
