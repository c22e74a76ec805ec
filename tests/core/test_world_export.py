"""``world export`` writes playable mp4s + metadata.jsonl, and ``data prepare`` on them gives the latents of encoding
the world's clips directly: by default the export is lossless (libx264rgb at crf 0), so only float16 storage differs."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from turbo_edge import cli
from turbo_edge.core import world
from turbo_edge.core.dataset import encode_latents, prepare
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.prepared import PreparedData
from turbo_edge.spec.configs import DataPrepareConfig

NUM = 8


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "train"
    assert cli.main(["world", "export", "--split", "train", "--num", str(NUM), "--out", str(out), "--seed", "3"]) == 0
    return out


def test_export_writes_playable_mp4s_and_metadata(exported: Path):
    rows = [json.loads(line) for line in (exported / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == [f"{i:06d}.mp4" for i in range(NUM)]
    assert [r["text"] for r in rows] == [world.sample("train", 3, i)[0].prompt for i in range(NUM)]
    for row in rows[:3]:
        with av.open(str(exported / row["file_name"])) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            assert stream.codec_context.name == "h264" and float(stream.average_rate) == 8
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    assert json.loads((exported / "world.json").read_text())["config"]["seed"] == 3


def test_export_refuses_an_existing_folder_unless_overwrite(exported: Path, tmp_path: Path):
    assert cli.main(["world", "export", "--num", "2", "--out", str(exported), "--seed", "3"]) == 2
    assert len(list(exported.glob("*.mp4"))) == NUM
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert cli.main(["world", "export", "--num", "2", "--out", str(foreign), "--overwrite"]) == 2  # not a world export
    assert (foreign / "notes.txt").read_text() == "keep"


def test_prepare_on_the_export_matches_encoding_the_world_directly(exported: Path, tmp_path: Path):
    index = prepare(DataPrepareConfig(source=str(exported), out=str(tmp_path / "data"), shard_size=NUM))
    assert index["samples"] == NUM and not any(index["bad"].values())
    batch = next(PreparedData(tmp_path / "data").batches(NUM))
    order = [int(s.split(".")[0]) for s in batch.sources]
    direct = encode_latents(load_teacher("builtin").vae, world.batch("train", 3, order)[1])
    err = (batch.latents - direct).abs()
    # Lossless video: what is left is float16 storage (half a unit in the last place: ~1e-3 at the latents' std of 1).
    # Through H.264 at crf 10 it was a mean error of 0.026 and relative RMS 0.042 (benchmarks/results/data.json).
    assert float(err.max()) < 4e-3
    # Each prepared clip is nearer its own directly encoded clip than any other clip.
    dist = torch.cdist(batch.latents.flatten(1), direct.flatten(1))
    assert torch.equal(dist.argmin(1), torch.arange(NUM))
    assert batch.captions == [world.sample("train", 3, i)[0].prompt for i in order]


def test_encoding_is_a_pure_function_of_the_clip_even_after_torch_ran(tmp_path: Path):
    """x264's mbtree made the same small clip encode to other bytes once a model had run in the process (5 files
    from 6 encodes of one 32x32 clip); the writer turns it off."""
    from turbo_edge.core.video_io import write_mp4

    clip = world.sample("train", 0, 0, world.WorldConfig())[1]
    seen = set()
    for k in range(4):
        seen.add(write_mp4(clip, tmp_path / f"{k}.mp4").read_bytes())
        vae = load_teacher("builtin").vae
        with torch.no_grad():
            vae.encode(torch.randn(2, 3, 32, 32))
    assert len(seen) == 1


def test_world_data_is_the_prepared_export_and_is_reused(tmp_path: Path):
    """What distill / prune train on without --data: the world exported and prepared in the run directory, at
    least 8 shards (one per process for up to 8), reused as it is by a second call."""
    from turbo_edge.core.world_export import world_data

    data = world_data("builtin", 16, 3, tmp_path)
    index = json.loads((data / "index.json").read_text())
    assert data == tmp_path / "data" and index["complete"] and index["samples"] == 16 and len(index["shards"]) == 8
    assert index["source"]["path"] == str(tmp_path / "world") and (tmp_path / "world" / "world.json").is_file()
    stamps = {f.name: f.stat().st_mtime_ns for f in [*data.iterdir(), *(tmp_path / "world").iterdir()]}
    assert world_data("builtin", 16, 3, tmp_path) == data
    assert {f.name: f.stat().st_mtime_ns for f in [*data.iterdir(), *(tmp_path / "world").iterdir()]} == stamps
    batch = next(PreparedData(data).batches(16))
    assert sorted(batch.captions) == sorted(world.sample("train", 3, i)[0].prompt for i in range(16))
    world_data("builtin", 24, 3, tmp_path)  # another size: both remade
    assert json.loads((data / "index.json").read_text())["samples"] == 24


def test_world_data_for_a_dit_renders_its_cards_lead_in_frame(tmp_path: Path):
    """A model whose card has a lead-in frame (builtin-dit: 9-frame clips, 1 + 4k for its causal autoencoder) gets
    world clips with that frame unless told otherwise: distill / prune / decoder train without --data."""
    from turbo_edge.core.world_export import world_data

    data = world_data("builtin-dit", 2, 0, tmp_path)
    index = json.loads((data / "index.json").read_text())
    assert index["geometry"]["frames"] == 9 and index["latent"]["temporal_factor"] == 4
    assert len(PreparedData(data)) == 2 and PreparedData(data).latent_frames == 3


def test_yuv444p_keeps_full_resolution_chroma(tmp_path: Path):
    """4:4:4 stores chroma at every pixel: the world's sharp colour edges come back nearer than through 4:2:0."""
    from turbo_edge.core.video_io import write_mp4

    clip = world.sample("train", 0, 5, world.WorldConfig())[1]
    errors = {}
    for pix_fmt in ("yuv420p", "yuv444p"):
        with av.open(str(write_mp4(clip, tmp_path / f"{pix_fmt}.mp4", pix_fmt=pix_fmt))) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.pix_fmt == pix_fmt
            back = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        errors[pix_fmt] = float(np.abs(back.astype(np.int16) - clip).mean())
    assert errors["yuv444p"] < 0.7 * errors["yuv420p"]
    with pytest.raises(ValueError, match="pix_fmt must be one of"):
        write_mp4(clip, tmp_path / "x.mp4", pix_fmt="gray")


def test_rgb24_at_crf_0_is_lossless(tmp_path: Path):
    """libx264rgb codes the RGB planes themselves (no YUV rounding): at crf 0 every pixel comes back exactly, through
    the reader data prepare uses; yuv444p at crf 0 still rounds in the colour conversion."""
    from turbo_edge.core.video_io import read_clip, write_mp4

    clip = world.sample("train", 0, 5, world.WorldConfig())[1]
    rgb = write_mp4(clip, tmp_path / "rgb.mp4", pix_fmt="rgb24", crf=0)
    with av.open(str(rgb)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "gbrp"  # H.264 High 4:4:4 Predictive, planar RGB
    assert np.array_equal(np.asarray(read_clip(rgb, 8, 32, 32)), clip)
    yuv = np.asarray(read_clip(write_mp4(clip, tmp_path / "yuv.mp4", pix_fmt="yuv444p", crf=0), 8, 32, 32))
    assert 0 < np.abs(yuv.astype(np.int16) - clip).max() <= 3
