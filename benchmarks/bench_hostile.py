"""Hostile inputs: peak RSS of ``data prepare`` on inputs made to exhaust memory, and the tally of the case tables.

    python benchmarks/bench_hostile.py --work build/bench_hostile --json benchmarks/results/hostile.json

Rows of ``rss`` (each ``turbo-edge data prepare`` a child process; its own peak RSS from ``wait4``):

- ``baseline``: one ordinary 64x48 clip (the floor: Python, torch and the builtin model);
- ``tar_bomb``: a gzipped tar holding a 1.5 GiB member of zeros named ``x.mp4`` (about 1.5 MB on disk);
- ``video_8000x8000``: an 8000x8000 H.264 clip of 8 frames (FFmpeg's ``testsrc``);
- ``video_8000x8000_limit_lifted``: the same clip with the frame-size limit raised past it (``LIMITS`` patched in
  the child), so it is decoded: frames are resized as they are picked, never held at full size;
- ``brace_pattern``: ``--source 'wds/x-{000000000..999999999}.tar'``.

``cases``: the case tables (``tests/*/test_cases_*.py``) run with pytest; every case's outcome by class and table.
Each row records its command, exit code and the last line it printed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import imageio_ffmpeg

from turbo_edge.spec.host import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
TABLES = ["tests/core/test_cases_data.py", "tests/core/test_cases_checkpoint.py", "tests/apps/test_cases_writers.py",
          "tests/spec/test_cases_config.py", "tests/serve/test_cases_serve.py"]
CAPTION = "a red circle moving left"
GOAL_MB = 1536  # the bound: under 1.5 GB, or refused in one line


def cpu_model() -> str:
    return cpu_model_name() or platform.processor() or "unknown"


def ffmpeg(out: Path, size: str, frames: int) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=8",
           "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def folder(root: Path, video: Path) -> Path:
    """A video folder holding ``video`` (moved in) and its one-row metadata.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    video.replace(root / video.name)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": video.name, "text": CAPTION}) + "\n")
    return root


def tar_bomb(path: Path, size: int) -> Path:
    """A gzip-compressed tar whose member ``x.mp4`` is ``size`` zero bytes, written as a stream (never in memory)."""
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("x.mp4")
        info.size = size

        class Zeros(io.RawIOBase):
            def __init__(self) -> None:
                self.left = size

            def readable(self) -> bool:
                return True

            def readinto(self, b) -> int:
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
        caption = CAPTION.encode()
        info = tarfile.TarInfo("x.txt")
        info.size = len(caption)
        tar.addfile(info, io.BytesIO(caption))
    return path


def measured(args: list[str], env: dict[str, str], lift_frame_limit: bool = False) -> dict:
    """Run ``turbo-edge ARGS`` as a child; its own peak RSS (wait4), wall time, exit code and last stderr line."""
    if lift_frame_limit:
        code = ("import sys; from turbo_edge.spec.configs.data import LIMITS; LIMITS['frame_pixels'] = 10**9; "
                "from turbo_edge.cli import main; sys.exit(main(sys.argv[1:]))")
        argv = [sys.executable, "-c", code, *args]
    else:
        argv = [sys.executable, "-m", "turbo_edge.cli", *args]
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [ln for ln in err.read().splitlines() if ln.startswith("turbo-edge") or "error" in ln.lower()]
    here = str(REPO) + os.sep  # paths in the record relative to the repository, as the commands run from it
    return {"command": ("turbo-edge " + " ".join(args)).replace(here, "") + ("  (LIMITS['frame_pixels'] raised in the child)" if lift_frame_limit else ""),
            "rc": proc.returncode, "last_line": (lines[-1] if lines else "").replace(here, ""), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(wall, 2)}


def rss_rows(work: Path, threads: int, bomb_gib: float) -> dict[str, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    common = ["--frames", "8", "--threads", str(threads)]
    small = folder(work / "small", ffmpeg(work / "small.mp4", "64x48", 16))
    huge = folder(work / "huge", ffmpeg(work / "huge.mp4", "8000x8000", 8))
    (work / "wds").mkdir(exist_ok=True)
    bomb = tar_bomb(work / "wds" / "bomb.tar", int(bomb_gib * (1 << 30)))
    rows = {
        "baseline": measured(["data", "prepare", "--source", str(small), "--out", str(work / "out_small"), *common], env),
        "tar_bomb": measured(["data", "prepare", "--source", str(bomb), "--out", str(work / "out_bomb"), *common], env),
        "video_8000x8000": measured(["data", "prepare", "--source", str(huge), "--out", str(work / "out_huge"), *common], env),
        "video_8000x8000_limit_lifted": measured(["data", "prepare", "--source", str(huge), "--out", str(work / "out_huge_lifted"), *common],
                                                 env, lift_frame_limit=True),
        "brace_pattern": measured(["data", "prepare", "--source", "wds/x-{000000000..999999999}.tar", "--out", str(work / "out_brace"), *common], env),
    }
    rows["tar_bomb"]["input"] = {"member_bytes": int(bomb_gib * (1 << 30)), "file_bytes": bomb.stat().st_size}
    rows["video_8000x8000"]["input"] = rows["video_8000x8000_limit_lifted"]["input"] = {"size": "8000x8000", "frames": 8,
                                                                                          "file_bytes": (huge / "huge.mp4").stat().st_size}
    for row in rows.values():
        row["under_goal_or_refused"] = row["peak_rss_mb"] < GOAL_MB or (row["rc"] == 2 and bool(row["last_line"]))
    return rows


def case_tally(work: Path) -> dict:
    report = work / "cases.xml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *TABLES], cwd=REPO, env=env,
                   capture_output=True, text=True)
    seconds = time.perf_counter() - start
    by_class: dict[str, Counter] = {}
    by_table: dict[str, Counter] = {}
    failed = []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        if "[" not in name or "/" not in name:
            continue  # the tables' helper tests, not cases
        cls = name.split("[", 1)[1].split("/", 1)[0]
        table = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "skipped" if case.find("skipped") is not None else "failed" if (case.find("failure") is not None or case.find("error") is not None) else "clean"
        if outcome == "failed":
            failed.append(name)
        for tally, key in ((by_class, cls), (by_table, table)):
            tally.setdefault(key, Counter())[outcome] += 1
    total = Counter()
    for c in by_class.values():
        total.update(c)

    def plain(t: dict[str, Counter]) -> dict[str, dict[str, int]]:
        return {k: {"tried": sum(v.values()), "clean": v["clean"], "failed": v["failed"], "skipped": v["skipped"]} for k, v in sorted(t.items())}

    return {"tried": sum(total.values()), "clean": total["clean"], "failed": total["failed"], "skipped": total["skipped"],
            "by_class": plain(by_class), "by_table": plain(by_table), "failed_cases": failed, "seconds": round(seconds, 1),
            "command": "python -m pytest -q " + " ".join(TABLES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="build/bench_hostile")
    parser.add_argument("--json", default="benchmarks/results/hostile.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bomb-gib", type=float, default=1.5)
    args = parser.parse_args()
    work = (REPO / args.work).resolve()
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    record = {
        "kind": "hostile",
        "command": f"python benchmarks/bench_hostile.py --work {args.work} --json {args.json} --threads {args.threads} --bomb-gib {args.bomb_gib:g}",
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads, "goal_peak_rss_mb": GOAL_MB,
        "rss": rss_rows(work, args.threads, args.bomb_gib),
        "cases": case_tally(work),
    }
    out = REPO / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    for name, row in record["rss"].items():
        print(f"{name:32s} rc {row['rc']}  peak RSS {row['peak_rss_mb']:8.1f} MB  {row['wall_s']:6.1f} s  {row['last_line'][:110]}")
    c = record["cases"]
    print(f"cases: {c['tried']} tried, {c['clean']} clean, {c['failed']} failed, {c['skipped']} skipped ({c['seconds']} s)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
