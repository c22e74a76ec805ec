"""``data prepare`` on FFmpeg-made sources (video folder, CSV, WebDataset), its resume after SIGKILL, the bad-sample
counts, and the ``PreparedData`` reader (sha256 check, disjoint ranks, exact resume). The model is the builtin
teacher (8 frames of 32x32, latents [8, 4, 8, 8])."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_sources import BAD, GOOD, make_videos, write_csv, write_jsonl, write_tar

from turbo_edge import cli
from turbo_edge.core import video_io
from turbo_edge.core.dataset import encode_batch, prepare
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.prepared import Position, PreparedData, model_fingerprint, read_index
from turbo_edge.spec import outputs
from turbo_edge.spec.configs import DataPrepareConfig

REPO = Path(__file__).resolve().parents[2]
EXPECTED_BAD = {reason: 1 for _, _, reason in BAD}
NO_BAD = dict.fromkeys(video_io.REASONS, 0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_videos(tmp_path_factory.mktemp("videos") / "src")


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("builtin")


@pytest.fixture(scope="module")
def prepared(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six good rows interleaved with one of each bad reason, resampled to 8 fps, in shards of 4."""
    rows = [(f, t) for f, t in GOOD[:3]] + [(f, t) for f, t, _ in BAD] + GOOD[3:]
    write_jsonl(videos, rows)
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(DataPrepareConfig(source=str(videos), out=str(out), fps=8, shard_size=4, batch=3))
    return out


@pytest.fixture(scope="module")
def many(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataPrepareConfig]:
    """12 good clips (each video under several captions) and a URL in 6 shards of 2, every 2nd frame, from a CSV."""
    rows = [(GOOD[i % 4][0], GOOD[(i + i // 4) % 6][1]) for i in range(12)]
    rows.insert(5, ("https://example.com/clip.mp4", "a red circle moving left"))  # a URL is not fetched: missing
    table = write_csv(videos / "many.csv", rows)
    out = tmp_path_factory.mktemp("data") / "many"
    cfg = DataPrepareConfig(source=str(table), out=str(out), stride=2, shard_size=2, batch=2, video_column="video_path")
    prepare(cfg)
    return out, cfg


def test_folder_source_counts_every_bad_reason_and_round_trips(prepared: Path, videos: Path, teacher):
    index = read_index(prepared)
    assert index["complete"] and index["samples"] == 6 and index["items"] == 14
    assert index["bad"] == EXPECTED_BAD and list(index["bad"]) == list(video_io.REASONS)  # every reason exactly once
    assert [s["samples"] for s in index["shards"]] == [4, 2] and [s["items_end"] for s in index["shards"]] == [12, 14]
    assert index["geometry"] == {"frames": 8, "height": 32, "width": 32} and index["sampling"] == {"fps": 8, "stride": None}
    assert index["model"]["fingerprint"] == model_fingerprint("builtin")[0]
    assert index["command"].startswith("turbo-edge data prepare --source") and "--fps 8" in index["command"]

    data = PreparedData(prepared)
    assert data.verify() == 6 and len(data) == 6
    batches = list(data.batches(4, seed=0))
    assert [len(b.captions) for b in batches] == [4, 2]
    got = {(s, c) for b in batches for s, c in zip(b.sources, b.captions)}
    assert got == set(GOOD)
    first = batches[0]
    assert first.latents.shape == (4, 8, 4, 8, 8) and first.latents.dtype == torch.float32 and first.text.shape[0] == 4

    # Under test: a stored sample equals decoding its file and encoding it as the distiller's x0 (float16 storage).
    shard = data.load_shard(0)
    clip = video_io.read_clip(videos / shard.sources[0], 8, 32, 32, fps=8)
    z, text = encode_batch(teacher, [clip], [shard.captions[0]])
    assert shard.latents.dtype == torch.float16  # held as stored; batches are float32
    assert torch.allclose(shard.latents[0].float(), z[0], atol=5e-3, rtol=5e-3)
    assert torch.allclose(shard.text[0].float(), text[0], atol=5e-3, rtol=5e-3)


def test_reader_refuses_another_model_or_geometry(prepared: Path):
    data = PreparedData(prepared)
    data.check_model("builtin", frames=8, height=32, width=32)
    data.check_model(fingerprint=model_fingerprint("builtin")[0])
    data.check_model("builtin-student")  # a student carries its teacher's VAE, text encoder and tokenizer
    with pytest.raises(ValueError, match="prepare the data again with --model") as exc:
        data.check_model(fingerprint="0" * 64)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=r"frames 8 \(wanted 16\)"):
        data.check_model(frames=16)


def test_fingerprint_follows_what_the_data_depends_on(tmp_path: Path):
    import shutil

    from turbo_edge.core.pipeline_io import ALIASES

    copy = Path(shutil.copytree(ALIASES["builtin"], tmp_path / "teacher"))
    base = model_fingerprint(copy)[0]
    assert base == model_fingerprint("builtin")[0]
    vae_config = copy / "vae" / "config.json"
    config = json.loads(vae_config.read_text())
    vae_config.write_text(json.dumps({**config, "_name_or_path": "elsewhere"}, indent=3))  # where it was saved from
    (copy / "unet" / "config.json").write_text("{}")  # the UNet does not shape the data
    assert model_fingerprint(copy)[0] == base
    vae_config.write_text(json.dumps({**config, "scaling_factor": 0.18215}))
    assert model_fingerprint(copy)[0] != base
    vae_config.write_text(json.dumps(config))
    weights = copy / "text_encoder" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    assert model_fingerprint(copy)[0] != base


def test_a_tampered_shard_is_refused_naming_it(prepared: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in prepared.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    shard = copy / "shard-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF  # one byte of the tensor data
    shard.write_bytes(bytes(raw))
    data = PreparedData(copy)
    data.load_shard(0)  # the untouched shard still loads
    with pytest.raises(ValueError) as exc:
        list(data.batches(2))
    message = str(exc.value)
    assert "shard-00001.safetensors" in message and "sha256" in message and "new --out" in message and "\n" not in message


def test_rerun_with_other_arguments_is_refused_then_overwritten(prepared: Path, videos: Path, tmp_path: Path, capsys):
    out = tmp_path / "redo"
    args = ["data", "prepare", "--source", str(videos), "--out", str(out), "--fps", "8", "--shard-size", "4", "--batch", "3"]
    assert cli.main(args) == 0
    assert [s["sha256"] for s in read_index(out)["shards"]] == [s["sha256"] for s in read_index(prepared)["shards"]]
    assert cli.main(args) == 0 and "already complete" in capsys.readouterr().err  # same arguments: nothing to do
    assert cli.main([*args[:-4], "--shard-size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shard_size 4 -> 8" in err and "--overwrite" in err
    assert cli.main([*args[:-4], "--shard-size", "8", "--overwrite"]) == 0
    index = read_index(out)
    assert [s["samples"] for s in index["shards"]] == [6] and index["bad"] == EXPECTED_BAD


def test_a_source_without_usable_clips_is_one_line_error(videos: Path, tmp_path: Path, capsys):
    src = tmp_path / "allbad"
    src.mkdir()
    (src / "corrupt.mp4").write_bytes((videos / "corrupt.mp4").read_bytes())
    write_jsonl(src, [("corrupt.mp4", "a red circle moving left"), ("nothere.mp4", "a red circle moving up")])
    assert cli.main(["data", "prepare", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("turbo-edge data prepare: error: ") and "no usable clips (1 missing, 1 unreadable)" in last


def test_csv_source_with_webvid_columns(many: tuple[Path, DataPrepareConfig]):
    out, _ = many
    index = read_index(out)
    assert index["source"]["kind"] == "csv" and index["samples"] == 12 and len(index["shards"]) == 6 and index["bad"] == {**NO_BAD, "missing": 1}
    assert index["items"] == 13 and [s["items_end"] for s in index["shards"]][:3] == [2, 4, 7]
    assert index["sampling"] == {"fps": None, "stride": 2}


def test_webdataset_source_from_a_brace_pattern(videos: Path, tmp_path: Path):
    clip = (videos / "bars.mp4").read_bytes()
    shards = tmp_path / "wds"
    shards.mkdir()
    write_tar(shards / "part-0.tar", {"k0.mp4": clip, "k0.txt": b"a red circle moving left",
                                      "k1.mp4": (videos / "fractal.webm").read_bytes(), "k1.json": json.dumps({"caption": "a blue square moving up"}).encode(),
                                      "k2.mp4": clip, "k2.txt": b"  "})
    write_tar(shards / "part-1.tar", {"k3.txt": b"a red square moving left", "k4.mp4": b"\x00" * 4096, "k4.txt": b"a red circle moving up",
                                      "k5.mp4": (videos / "wide.mp4").read_bytes(), "k5.txt": b"a white triangle moving right"})
    out = tmp_path / "out"
    index = prepare(DataPrepareConfig(source=str(shards / "part-{0..1}.tar"), out=str(out), shard_size=2))
    assert index["source"]["kind"] == "webdataset" and index["samples"] == 3 and index["items"] == 6
    assert index["bad"] == {**NO_BAD, "empty_caption": 1, "missing": 1, "unreadable": 1}
    batch = next(PreparedData(out).batches(3))
    assert sorted(zip(batch.sources, batch.captions)) == [("part-0.tar:k0", "a red circle moving left"),
                                                          ("part-0.tar:k1", "a blue square moving up"),
                                                          ("part-1.tar:k5", "a white triangle moving right")]


def test_webdataset_folder_with_a_truncated_shard_keeps_what_precedes_the_damage(videos: Path, tmp_path: Path):
    shards = tmp_path / "wds"
    shards.mkdir()
    good = {"a.mp4": (videos / "bars.mp4").read_bytes(), "a.txt": b"a red circle moving left"}
    write_tar(shards / "000.tar", good)
    whole = write_tar(tmp_path / "whole.tar", {**good, "b.mp4": (videos / "wide.mp4").read_bytes(), "b.txt": b"a blue square moving up"})
    with tarfile.open(whole) as tar:
        b = tar.getmember("b.mp4")
    (shards / "001.tar").write_bytes(whole.read_bytes()[:b.offset_data + b.size // 2])  # a download cut short inside b.mp4
    stale = tmp_path / "out" / f".index.json.tmp-{outputs._host()}-{2**22 + 17}-x1y2"  # a run killed writing its first index
    stale.parent.mkdir()
    stale.write_text("{")
    index = prepare(DataPrepareConfig(source=str(shards), out=str(tmp_path / "out")))
    assert index["samples"] == 2 and index["bad"] == {**NO_BAD, "unreadable": 1} and not stale.exists()
    assert sorted(next(PreparedData(tmp_path / "out").batches(4)).sources) == ["000.tar:a", "001.tar:a"]


def test_killed_prepare_resumes_after_its_last_shard(many: tuple[Path, DataPrepareConfig], tmp_path: Path):
    full, cfg = many
    out = tmp_path / "killed"
    killed = cfg.replace(out=str(out))
    # The child sleeps after writing each shard (before the index lists it), so the kill lands between shards.
    code = ("import time, sys; from turbo_edge.core import dataset as d; from turbo_edge.spec.configs import DataPrepareConfig; "
            "w = d.write_shard; d.write_shard = lambda *a, **k: (w(*a, **k), time.sleep(0.4))[0]; "
            "d.prepare(DataPrepareConfig.from_dict(__import__('json').loads(sys.argv[1])))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(killed.to_dict())], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "shard-00001.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the child ended before its second shard"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sorted(out.glob("shard-*.safetensors"))
    assert 2 <= len(done) < 6 and not read_index(out)["complete"]
    with pytest.raises(ValueError, match="is not finished"):
        PreparedData(out)
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in done}

    index = prepare(killed)
    assert index["complete"]
    assert {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in out.glob("shard-*.safetensors") if f.name in before} == before
    reference = read_index(full)
    assert [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in reference["shards"]]  # byte for byte the uninterrupted run
    assert index["samples"] == 12 and index["bad"] == reference["bad"]
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # the killed run's temp files are gone


def test_two_ranks_read_disjoint_shares_that_cover_everything(many: tuple[Path, DataPrepareConfig]):
    data = PreparedData(many[0])
    for world_size in (2, 3):
        shares = [[s for b in data.batches(4, rank=r, world_size=world_size, seed=3) for s in zip(b.sources, b.captions)]
                  for r in range(world_size)]
        seen = [x for share in shares for x in share]
        assert len(seen) == 12 and len(set(seen)) == 12
        assert all(set(a).isdisjoint(b) for i, a in enumerate(shares) for b in shares[i + 1:])
    with pytest.raises(ValueError, match="6 shards, fewer than the 7 ranks"):
        next(data.batches(1, rank=0, world_size=7))
    epoch0 = [b.captions for b in data.batches(12, seed=3, epochs=1)]
    epoch1 = [b.captions for b in data.batches(12, seed=3, start=Position(1), epochs=2)]
    assert epoch0 != epoch1 and sorted(epoch0[0]) == sorted(epoch1[0])  # a new shuffle each epoch, the same samples
    assert [b.captions for b in data.batches(12, seed=3)] == epoch0  # the same seed, the same order


def test_resume_position_continues_exactly(many: tuple[Path, DataPrepareConfig]):
    data = PreparedData(many[0])
    full = list(data.batches(5, rank=1, world_size=2, seed=7, epochs=3))
    assert len(full) == 6  # 6 samples per rank per epoch: batches of 5 and 1, three epochs
    for cut in (1, 2, 3):
        saved = json.loads(json.dumps(full[cut - 1].position.to_dict()))  # as a checkpoint stores it
        rest = list(data.batches(5, rank=1, world_size=2, seed=7, epochs=3, start=Position.from_dict(saved)))
        assert [b.sources for b in rest] == [b.sources for b in full[cut:]]
        assert all(torch.equal(a.latents, b.latents) and torch.equal(a.text, b.text) for a, b in zip(rest, full[cut:]))


def test_pick_by_time_resamples_by_timestamps():
    ten_fps = [(i / 10, 0.1, i) for i in range(20)]
    assert video_io.pick_by_time(ten_fps, 4, 4) == [0, 2, 5, 7]  # targets 0, .25, .5, .75 s: the frame on screen then
    two_fps = [(i / 2, 0.5, i) for i in range(3)]
    assert video_io.pick_by_time(two_fps, 4, 6) == [0, 0, 1, 1, 2, 2]  # up-sampling repeats frames
    assert video_io.pick_by_time(two_fps, 4, 7) == [0, 0, 1, 1, 2, 2]  # 1.5 s is past the last frame's end: too short
    assert video_io.pick_by_stride(range(10), 3, 3) == [0, 3, 6]


def test_resize_keeps_the_centre():
    import av

    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    out = video_io.resize_crop(av.VideoFrame.from_ndarray(image, format="rgb24"), 32, 32)
    assert out.shape == (32, 32, 3) and out[0, 0, 0] == 64 and out[0, -1, 0] == 47 * 4  # columns 16..47
    small = video_io.resize_crop(av.VideoFrame.from_ndarray(np.full((48, 96, 3), 200, np.uint8), format="rgb24"), 32, 32)
    assert small.shape == (32, 32, 3) and int(small.min()) == int(small.max()) == 200


def test_recorded_command_rebuilds_the_config(capsys):
    import shlex

    from turbo_edge.spec.configs.data import flag_command

    cfg = DataPrepareConfig(source="shards/train-{000..009}.tar", out="data/it's here", fps=7.5, caption_column="json", shard_size=64)
    argv = shlex.split(flag_command(cfg, "data prepare"))
    assert argv[:3] == ["turbo-edge", "data", "prepare"]
    assert cli.main([*argv[1:], "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == cfg.to_dict()
    with pytest.raises(ValueError, match="--fps and --stride"):
        DataPrepareConfig(source="s", out="o", fps=8, stride=2)
