"""``data prepare`` throughput, bad-sample counts and resume, on a video folder made with FFmpeg's test sources.

    python benchmarks/bench_data.py --clips 36 --threads 1 --out build/bench_data --json benchmarks/results/data.json

The source holds ``--clips`` good clips cycling through four encodings (H.264 / MPEG-4 Part 2 / VP8 in WebM, 40x40
to 96x54, 10-30 fps) plus one of each bad kind (corrupt bytes, a 3-frame clip, an empty caption, a listed but
missing file, a caption outside the builtin teacher's vocabulary). Rows:

- ``prepare``: clips/s of the whole ``prepare`` call (model load, decode, resize, VAE + text encoder, shard writes),
  one warm-up then ``--runs`` timed runs into fresh directories, median; the same less a separately timed
  ``load_teacher`` (median); and decode + resize alone (``read_clip``);
- ``bad``: the index's counts by reason (each must be 1);
- ``resume``: a ``turbo-edge data prepare`` child SIGKILLed once its second shard is on disk, then re-run: whether
  its finished shards were left untouched (inode, mtime) and every shard's sha256 equals an uninterrupted run's;
- ``world_roundtrip``: ``world export`` -> ``data prepare`` against encoding the same world clips directly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg

from turbo_edge.spec.host import cpu_model_name

ENCODINGS = [  # (lavfi source, size, fps, seconds, codec args, suffix)
    ("testsrc", "64x48", 10, 2, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ".mp4"),
    ("smptebars", "48x64", 25, 1, ["-c:v", "mpeg4", "-q:v", "5"], ".mp4"),
    ("mandelbrot", "40x40", 15, 1, ["-c:v", "libvpx", "-b:v", "300k"], ".webm"),
    ("testsrc", "96x54", 30, 1, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ".mp4"),
]
REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    return cpu_model_name() or platform.processor() or "unknown"


def ffmpeg(path: Path, source: str, size: str, fps: int, length: list[str], codec: list[str]) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"{source}=size={size}:rate={fps}", *length, *codec, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)


def make_source(folder: Path, clips: int) -> tuple[list[Path], int]:
    """The video folder; returns the good files and how many rows its metadata.jsonl has."""
    from turbo_edge.core import world

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = []
    for k, (source, size, fps, seconds, codec, suffix) in enumerate(ENCODINGS):
        files.append(folder / f"enc{k}{suffix}")
        ffmpeg(files[-1], source, size, fps, ["-t", str(seconds)], codec)
    ffmpeg(folder / "short.mp4", "testsrc", "32x32", 10, ["-frames:v", "3"], ENCODINGS[0][4])
    (folder / "corrupt.mp4").write_bytes(os.urandom(16384))
    prompts = [a.prompt for a in world.prompt_set("train", clips, seed=0)]
    rows = [{"file_name": files[i % len(files)].name, "text": prompts[i]} for i in range(clips)]
    rows[3:3] = [{"file_name": "short.mp4", "text": prompts[0]}, {"file_name": "corrupt.mp4", "text": prompts[1]},
                 {"file_name": files[0].name, "text": ""}, {"file_name": "gone.mp4", "text": prompts[2]},
                 {"file_name": files[1].name, "text": "a pink elephant dancing"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files, len(rows)


def resume_check(source: Path, out: Path, reference: dict, shard_size: int, threads: int) -> dict:
    from turbo_edge.core.dataset import prepare
    from turbo_edge.core.prepared import read_index
    from turbo_edge.spec.configs import DataPrepareConfig

    if out.exists():
        shutil.rmtree(out)
    argv = [sys.executable, "-m", "turbo_edge.cli", "data", "prepare", "--source", str(source), "--out", str(out),
            "--shard-size", str(shard_size), "--threads", str(threads)]
    child = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "shard-00001.safetensors").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in out.glob("shard-*.safetensors")}
    index = prepare(DataPrepareConfig(source=str(source), out=str(out), shard_size=shard_size, threads=threads))
    after = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in out.glob("shard-*.safetensors")}
    return {"killed": child.returncode == -signal.SIGKILL, "shards_before_kill": len(finished),
            "shards_total": len(index["shards"]), "rewritten_shards": sum(after[n] != v for n, v in finished.items()),
            "equal_to_uninterrupted": [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in read_index(reference)["shards"]]
            and index["bad"] == read_index(reference)["bad"]}


def world_roundtrip(work: Path, num: int, threads: int) -> dict:

    from turbo_edge.core import world
    from turbo_edge.core.dataset import encode_latents, prepare
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.prepared import PreparedData
    from turbo_edge.core.world_export import export_world
    from turbo_edge.spec.configs import DataPrepareConfig, WorldExportConfig

    for d in ("world", "world_data"):
        shutil.rmtree(work / d, ignore_errors=True)
    export_world(WorldExportConfig(num=num, out=str(work / "world"), seed=0))
    prepare(DataPrepareConfig(source=str(work / "world"), out=str(work / "world_data"), shard_size=num, threads=threads))
    batch = next(PreparedData(work / "world_data").batches(num))
    order = [int(s.split(".")[0]) for s in batch.sources]
    direct = encode_latents(load_teacher("builtin").vae, world.batch("train", 0, order)[1])
    diff = batch.latents - direct
    return {"clips": num, "crf": WorldExportConfig.crf, "pix_fmt": WorldExportConfig.pix_fmt, "mean_abs_error": float(diff.abs().mean()), "max_abs_error": float(diff.abs().max()),
            "relative_rms_error": float(diff.pow(2).mean().sqrt() / direct.pow(2).mean().sqrt()), "latent_std": float(direct.std())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=36, help="good clips in the source")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="timed prepare runs (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="build/bench_data")
    parser.add_argument("--json", default="benchmarks/results/data.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from turbo_edge.core import video_io
    from turbo_edge.core.dataset import prepare
    from turbo_edge.core.pipeline_io import load_teacher
    from turbo_edge.core.prepared import PreparedData, read_index
    from turbo_edge.spec import logs
    from turbo_edge.spec.configs import DataPrepareConfig

    logs.configure()
    load = list(os.getloadavg())
    work = Path(args.out)
    source = work / "source"
    files, rows = make_source(source, args.clips)

    def run(out: Path) -> float:
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        prepare(DataPrepareConfig(source=str(source), out=str(out), shard_size=args.shard_size, threads=args.threads))
        return time.perf_counter() - start

    run(work / "warmup")
    seconds = [run(work / f"run{i}") for i in range(args.runs)]
    reference = work / "run0"
    index = read_index(reference)
    decode = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for i in range(args.clips):
            video_io.read_clip(files[i % len(files)], 8, 32, 32)
        decode.append(time.perf_counter() - start)
    loads = []
    for _ in range(args.runs):
        start = time.perf_counter()
        load_teacher("builtin")
        loads.append(time.perf_counter() - start)
    verified = PreparedData(reference).verify()
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
        "machine": {"platform": platform.platform(), "loadavg_at_start": load},
        "source": {"rows": rows, "good_clips": args.clips, "encodings": [f"{e[0]} {e[1]} {e[2]} fps {e[4][1]}" for e in ENCODINGS]},
        "prepare": {"model": "builtin", "geometry": index["geometry"], "shards": len(index["shards"]), "samples": index["samples"],
                    "seconds_median": statistics.median(seconds), "seconds": seconds,
                    "clips_per_s": index["samples"] / statistics.median(seconds), "model_load_seconds_median": statistics.median(loads),
                    "clips_per_s_after_model_load": index["samples"] / (statistics.median(seconds) - statistics.median(loads)),
                    "decode_resize_clips_per_s": args.clips / statistics.median(decode), "verified_samples": verified},
        "bad": index["bad"],
        "resume": resume_check(source, work / "resumed", reference, args.shard_size, args.threads),
        "world_roundtrip": world_roundtrip(work, 12, args.threads),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("prepare", "bad", "resume", "world_roundtrip")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
