"""``decoder samples``: a student's own final latents written as a prepared dataset (the inputs its decoder sees at
deployment), resumable to the same bytes, refused for a model that is not a student, read by ``decoder train``."""

from __future__ import annotations

import json

import pytest
import torch

from turbo_edge import cli
from turbo_edge.core.pipeline_io import load_teacher
from turbo_edge.core.prepared import PreparedData
from turbo_edge.core.student_sampling import student_latents
from turbo_edge.core.train_data import load_checked
from turbo_edge.decoder import samples as samples_mod
from turbo_edge.decoder.samples import prompts_for, samples
from turbo_edge.spec.configs import DecoderSamplesConfig, DecoderTrainConfig


def _cfg(model, out, **kw):
    return DecoderSamplesConfig(**{"model": str(model), "out": str(out), "clips": 5, "shard_size": 2, "batch": 2, "steps": 2, "threads": 1, **kw})


def _shards(out):
    return [p.read_bytes() for p in sorted(out.glob("shard-*.safetensors"))]


def test_samples_are_the_students_final_latents_and_resume_to_the_same_bytes(tiny_student_dir, tiny_t2v_dir, tmp_path, monkeypatch):
    cfg = _cfg(tiny_student_dir, tmp_path / "ref")
    index = samples(cfg)
    assert index["complete"] and index["samples"] == 5 and [s["samples"] for s in index["shards"]] == [2, 2, 1]
    assert index["source"]["kind"] == "student-samples" and index["sampling"]["steps"] == 2
    data = PreparedData(tmp_path / "ref")
    data.verify()
    # A DATA of the student's (and so of its teacher's: the same autoencoder and text encoder), read as any other.
    load_checked(tmp_path / "ref", tiny_student_dir)
    load_checked(tmp_path / "ref", tiny_t2v_dir)
    # The stored latents are the sampler's own: clip i with noise stream i, whatever the shard.
    model = load_teacher(tiny_student_dir)
    prompts = prompts_for(cfg)
    want = torch.cat(list(student_latents(model, prompts, steps=2, seed=0))).permute(0, 2, 1, 3, 4)
    got = torch.cat([data.load_shard(k).latents for k in range(3)]).float()
    assert got.shape == want.shape and torch.allclose(got, want, atol=2e-3)  # float16 storage, another batching
    assert [c for k in range(3) for c in data.load_shard(k).captions] == prompts
    assert [c for k in range(3) for c in data.shard_captions(k)] == prompts  # the header alone, sha256 checked too
    # Killed after its first shard, then run again: the same bytes as the uninterrupted run.
    real = samples_mod.write_shard
    calls = []

    def dies_on_the_second(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(samples_mod, "write_shard", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        samples(_cfg(tiny_student_dir, tmp_path / "run"))
    assert len(_shards(tmp_path / "run")) == 1  # half-done: one shard
    with pytest.raises(ValueError, match="not finished"):
        PreparedData(tmp_path / "run")
    monkeypatch.setattr(samples_mod, "write_shard", real)
    samples(_cfg(tiny_student_dir, tmp_path / "run"))
    assert _shards(tmp_path / "run") == _shards(tmp_path / "ref")
    # Other arguments into the same directory are refused, not mixed in.
    with pytest.raises(FileExistsError, match="other arguments"):
        samples(_cfg(tiny_student_dir, tmp_path / "run", seed=1))
    # Another dataset's captions are the prompts, cycled.
    other = _cfg(tiny_student_dir, tmp_path / "captions", captions=str(tmp_path / "ref"), clips=7, shard_size=7)
    assert prompts_for(other) == (prompts + prompts)[:7]
    # decoder train reads it: the latents its tiny decoder learns to decode are the student's.
    from turbo_edge.decoder.train import train

    train(DecoderTrainConfig.make(model=str(tiny_student_dir), data=str(tmp_path / "ref"), val_clips=0, out=str(tmp_path / "dec"),
                                  steps=1, batch=2, width=8, threads=1))
    assert json.loads((tmp_path / "dec" / "log.jsonl").read_text().splitlines()[0])["step"] == 1
    from turbo_edge.spec.card import read_card

    made = read_card(tmp_path / "dec" / "model").decoders["tiny"].lineage.details["reproduce"]  # the samples' command, then the run
    assert made.startswith(f"turbo-edge decoder samples --model {tiny_student_dir} --out {tmp_path / 'ref'} ") and " && turbo-edge decoder train " in made
    # It holds no videos: a reference for FD needs those.
    from turbo_edge.core.reference_clips import load_reference

    with pytest.raises(ValueError, match="holds a student's samples"):
        load_reference(tmp_path / "ref", 4, 16, 16, 2)


def test_a_teacher_and_bad_arguments_are_refused(tiny_t2v_dir, tiny_student_dir, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="not a consistency student"):
        samples(_cfg(tiny_t2v_dir, tmp_path / "t"))
    with pytest.raises(ValueError, match="supports"):
        samples(_cfg(tiny_student_dir, tmp_path / "s", steps=3))
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()  # refused before anything was written
    # A caption outside the model's closed vocabulary: refused in one line, before any index is written.
    from turbo_edge.core.sampling import PromptError

    monkeypatch.setattr(samples_mod, "prompts_for", lambda cfg: ["a red circle", "a glorbnax zooming"])
    with pytest.raises(PromptError):
        samples(_cfg(tiny_student_dir, tmp_path / "v"))
    assert not (tmp_path / "v" / "index.json").exists()
    for bad in ({"clips": 0}, {"shard_size": 0}, {"out": " "}, {"captions": ""}, {"dtype": "int8"}, {"guidance": -1.0}):
        with pytest.raises(ValueError):
            DecoderSamplesConfig(**{"out": "x", **bad})
    assert cli.main(["decoder", "samples", "--model", "m", "--out", "o", "--clips", "64", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kind"] == "decoder_samples" and printed["clips"] == 64
