"""The whole toolchain at a real model's size, as a user runs it: every stage a ``turbo-edge`` command, its wall time
and its own peak RSS.

    python benchmarks/bench_real_size.py                  # ModelScope T2V size, 8 frames 128x128 (~1 h on 2 cores)
    python benchmarks/bench_real_size.py --shape tiny     # the same chain at a reduced width, in about a minute

Stages, each a child process (so each peak RSS is that stage's own, from ``os.wait4``'s rusage):

1. ``teacher``: a TextToVideoSDPipeline directory with random weights, saved with the pinned diffusers /
   transformers ``save_pretrained`` (``bench_real_shape.build_teacher``; cached under ``--work`` by its recipe):
   ModelScope T2V's UNet3D (320/640/1280/1280, cross-attention 1024, head dim 64, two layers per block: not one,
   since the VDMini plan of stage 4 refuses ``layers_per_block`` 1, ``spec.plan``), Stable Diffusion's VAE
   (128/256/512/512) and a 2-layer CLIP text encoder of width 1024;
2. ``data``: a folder of mp4 clips from FFmpeg's test sources (``bench_data.ffmpeg``) -> ``turbo-edge data prepare``;
3. ``distill``: 3 LoRA steps on that data, batch 1, bf16 autocast, gradient checkpointing, a per-tensor AdamW step, the teacher shared with
   the student's base, no rewards;
4. ``prune``: the VDMini block plan, 2 recovery steps on the data;
5. ``export``: fp32 + int8 (the UNet with external data at this size; int8 by ``int8_format`` auto, which picks
   OpenVINO IR above 2 GiB; calibration bounded to a few prompts from the data and a few timesteps);
6. ``verify``: ``turbo-edge verify`` on the bundle;
7. ``generate``: one video from the bundle's int8 UNet with ``--backend openvino``.

Weights are random, so the int8 gate's tolerance is loosened (``--int8-tolerance``): this run measures time and
memory; the gate's number still lands in the bundle's parity.json. The JSON (``--out``) holds each stage's command,
wall time, peak RSS and whether it stayed under the goal (``GOAL_PEAK_RSS_GIB`` per stage), and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_real_shape import MODELSCOPE_UNET, SD_VAE, VIT_H_TEXT, build_teacher  # noqa: E402

SCHEMA = 1
GOAL_PEAK_RSS_GIB = 20.0
STAGES = ("teacher", "data", "distill", "prune", "export", "verify", "generate")
SHAPES: dict[str, dict[str, Any]] = {
    "modelscope": {"unet": MODELSCOPE_UNET, "vae": SD_VAE, "text": {**VIT_H_TEXT, "num_hidden_layers": 2}, "frames": 8, "size": 128},
    # The same families at a reduced width; 64 px so the 4-level VAE leaves a latent the 4-level UNet can halve 3 times.
    "tiny": {
        "unet": {**MODELSCOPE_UNET, "block_out_channels": (32, 64, 64, 64), "cross_attention_dim": 64, "attention_head_dim": 16, "norm_num_groups": 16},
        "vae": {**SD_VAE, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 16},
        "text": {**VIT_H_TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "projection_dim": 64},
        "frames": 8, "size": 64,
    },
}
CLIPS = 8  # source videos (each a few seconds of an FFmpeg test pattern)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def teacher_config(shape: str) -> dict[str, Any]:
    return {k: SHAPES[shape][k] for k in ("unet", "vae", "text")}


def make_source(folder: Path, clips: int) -> Path:
    """``clips`` mp4 files from FFmpeg's test sources (bench_data's H.264 / MPEG-4 encodings) with world captions."""
    from bench_data import ENCODINGS, ffmpeg

    from turbo_edge.core import world

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    mp4 = [e for e in ENCODINGS if e[5] == ".mp4"]
    prompts = [a.prompt for a in world.prompt_set("train", clips, seed=0)]
    rows = []
    for i in range(clips):
        source, size, fps, seconds, codec, suffix = mp4[i % len(mp4)]
        name = f"clip{i:02d}{suffix}"
        ffmpeg(folder / name, source, size, fps, ["-t", str(seconds + 1)], codec)
        rows.append({"file_name": name, "text": prompts[i]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run_stage(name: str, argv: list[str], shown: str, logs: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one stage's child to completion; its wall time and its own peak RSS (``wait4``'s rusage of that child)."""
    log(f"{name}: {shown}")
    out = logs / f"{name}.log"
    start = time.perf_counter()
    with out.open("w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 2**20  # KiB on Linux
    row = {"command": shown, "wall_s": round(time.perf_counter() - start, 1), "peak_rss_gib": round(peak, 3),
           "returncode": proc.returncode, "log": str(out), "goal_peak_rss_gib": GOAL_PEAK_RSS_GIB,
           "passed": proc.returncode == 0 and peak < GOAL_PEAK_RSS_GIB}
    log(f"{name}: {row['wall_s']} s, peak RSS {row['peak_rss_gib']:.2f} GiB{'' if proc.returncode == 0 else f', exit {proc.returncode}'}")
    return row


def int8_gate(bundle: Path) -> dict[str, Any] | None:
    """The int8 UNet's parity gate from the bundle's parity.json (error against PyTorch on calibration feeds), or None."""
    try:
        parity = json.loads((bundle / "parity.json").read_text())
    except (OSError, ValueError):
        return None
    for backend, components in parity.items():
        gate = components.get("unet", {}).get("int8") if isinstance(components, dict) else None
        if gate:
            return {"backend": backend, **{k: gate.get(k) for k in ("metric", "mean_rel", "max_abs", "tolerance", "passed")}}
    return None


def commands(args: argparse.Namespace, work: Path, run: Path) -> dict[str, list[str]]:
    """Each stage's arguments after ``turbo-edge`` (the teacher stage: this script's own ``--teacher-only``)."""
    shape = SHAPES[args.shape]
    frames, size, threads = str(shape["frames"]), str(shape["size"]), str(args.threads)
    teacher, data, bundle = work / "teacher", run / "data", run / "bundle"
    common = ["--threads", threads, "--batch", "1", "--mixed-precision", "bf16", "--gradient-checkpointing", "--lean-optimizer", "--data", str(data),
              "--log-every", "1", "--checkpoint-every", "1000"]
    return {
        "data": ["data", "prepare", "--source", str(run / "source"), "--model", str(teacher), "--out", str(data), "--frames", frames,
                 "--height", size, "--width", size, "--batch", "1", "--threads", threads],
        "distill": ["distill", "--teacher", str(teacher), "--out", str(run / "distill"), "--mode", "lora", "--steps", "3",
                    "--teacher-weights", "shared", "--set", "rewards=[]", *common],
        "prune": ["prune", "--student", str(run / "distill" / "student"), "--out", str(run / "prune"), "--rule", "vdmini", "--steps", "2",
                  "--importance-clips", "0", *common],
        "export": ["export", "--model", str(run / "prune" / "pruned"), "--out", str(bundle), "--precision", "fp32,int8", "--frames", frames,
                   "--height", size, "--width", size, "--max-batch", "1", "--threads", threads, "--data", str(data),
                   "--set", f"int8_format={args.int8_format}", "--set", "int8_calibration_prompts=2", "--set", "int8_calibration_steps=2",
                   "--set", "int8_subset_size=4", "--set", "int8_bias_correction=false", "--set", "openvino_check=false",
                   "--set", f"tolerance_int8={args.int8_tolerance}"],
        "verify": ["verify", str(bundle)],
        "generate": ["generate", "--bundle", str(bundle), "--backend", "openvino", "--precision", "int8", "--threads", threads,
                     "--out", str(run / "clip.mp4"), "--scale", "1", "a red circle moving left"],
    }


def artifacts(work: Path, run: Path) -> dict[str, Path]:
    """What each stage leaves behind (the test checks each exists)."""
    return {"teacher": work / "teacher" / "model_index.json", "data": run / "data" / "index.json",
            "distill": run / "distill" / "student" / "turbo_edge.json", "prune": run / "prune" / "pruned" / "pruning_plan.json",
            "export": run / "bundle" / "manifest.json", "verify": run / "bundle" / "manifest.json", "generate": run / "clip.mp4"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="modelscope")
    p.add_argument("--work", default=str(ROOT / "build" / "real_size"), help="artifacts go to WORK/SHAPE (the teacher is reused by its recipe)")
    p.add_argument("--out", default=None, help="default benchmarks/results/real_size.json (tiny: WORK/tiny/real_size.json)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--int8-format", default="auto", choices=("auto", "qdq", "openvino"))
    p.add_argument("--int8-tolerance", type=float, default=1.0, help="the int8 gate's mean relative error bound (random weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-only", action="store_true", help="build (or reuse) the teacher under --work and stop (the teacher stage's child)")
    args = p.parse_args(argv)
    work = Path(args.work).resolve() / args.shape
    if args.teacher_only:
        build_teacher(work, args.shape, args.seed, teacher_config(args.shape))
        return 0

    from turbo_edge.bench.common import machine_info

    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)  # every stage runs again (a leftover run would resume, not measure)
    (run / "logs").mkdir(parents=True)
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" / "real_size.json" if args.shape == "modelscope" else work / "real_size.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": str(args.threads)}
    record: dict[str, Any] = {
        "schema": SCHEMA, "command": "python benchmarks/bench_real_size.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(args.threads), "threads": args.threads, "goal_peak_rss_gib": GOAL_PEAK_RSS_GIB,
        "shape": {"name": args.shape, **SHAPES[args.shape]}, "stages": {}, "note": "random weights; each stage a child process, peak RSS its own",
    }
    start = time.perf_counter()
    make_source(run / "source", CLIPS)
    source_s = round(time.perf_counter() - start, 1)
    me = [sys.executable, str(Path(__file__).resolve()), "--teacher-only", "--shape", args.shape, "--work", str(Path(args.work).resolve()), "--seed", str(args.seed)]
    def shown(words: list[str]) -> str:  # paths under the checkout relative to it, as a user re-runs them from its root
        return shlex.join(w.replace(f"{ROOT}{os.sep}", "") for w in words)

    stages = {"teacher": (me, "python benchmarks/bench_real_size.py " + shown(me[2:])),
              **{k: ([sys.executable, "-m", "turbo_edge.cli", *v], "turbo-edge " + shown(v)) for k, v in commands(args, work, run).items()}}
    teacher_was_built = (work / "teacher" / "model_index.json").is_file()
    for name in STAGES:
        argv_, shown = stages[name]
        row = run_stage(name, argv_, shown, run / "logs", env)
        if name == "teacher":
            row["reused"] = teacher_was_built  # then its time is the recipe check; a fresh build is ~40 s, ~6 GiB here
        if name == "data":
            row["source_wall_s"] = source_s
        record["stages"][name] = row
        if row["returncode"] != 0:
            tail = (run / "logs" / f"{name}.log").read_text().strip().splitlines()[-1:]
            log(f"{name} failed: {tail}; later stages skipped")
            break
    if (run / "bundle" / "export_config.json").is_file():
        record["int8_format"] = json.loads((run / "bundle" / "export_config.json").read_text())["int8_format"]
    record["int8_gate"] = int8_gate(run / "bundle")
    record["passed"] = len(record["stages"]) == len(STAGES) and all(r["passed"] for r in record["stages"].values())
    record["max_peak_rss_gib"] = max(r["peak_rss_gib"] for r in record["stages"].values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    log(f"wrote {out}: {'all stages under' if record['passed'] else 'NOT all stages under'} {GOAL_PEAK_RSS_GIB} GiB (max {record['max_peak_rss_gib']:.2f})")
    return 0 if all(r["returncode"] == 0 for r in record["stages"].values()) and len(record["stages"]) == len(STAGES) else 1


if __name__ == "__main__":
    sys.exit(main())
