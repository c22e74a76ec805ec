"""`turbo-edge convert`: a model directory with its weights stored in float16 loads back and runs on the rounded weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from turbo_edge import cli
from turbo_edge.core.pipeline_io import convert_weights, load_teacher
from turbo_edge.spec.card import CARD_FILE as META_FILE


def test_float16_copy_halves_the_bytes_and_loads_the_rounded_weights(tiny_t2v_dir, tmp_path):
    out = convert_weights(tiny_t2v_dir, tmp_path / "half", "float16")
    src_unet = tiny_t2v_dir / "unet" / "diffusion_pytorch_model.safetensors"
    half_unet = out / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(half_unet))
    assert all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point())
    assert half_unet.stat().st_size < 0.6 * src_unet.stat().st_size
    original, converted = load_teacher(tiny_t2v_dir), load_teacher(out)
    assert next(converted.unet.parameters()).dtype == torch.float32  # read back as float32 by default
    for name, p in original.unet.state_dict().items():
        assert torch.equal(converted.unet.state_dict()[name], p.half().float()), name
    assert json.loads((out / META_FILE).read_text())["weights_dtype"] == "float16"
    assert (out / "tokenizer" / "tokenizer.json").read_text() == (tiny_t2v_dir / "tokenizer" / "tokenizer.json").read_text()


def test_convert_appends_itself_to_the_reproduce_line(tiny_t2v_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_t2v_dir, src)
    meta = json.loads((src / META_FILE).read_text()) if (src / META_FILE).is_file() else {}
    (src / META_FILE).write_text(json.dumps({**meta, "reproduce": "turbo-edge distill --set steps=3"}))
    out = convert_weights(src, tmp_path / "half", "float16")
    line = json.loads((out / META_FILE).read_text())["reproduce"]
    assert line == f"turbo-edge distill --set steps=3 && turbo-edge convert --model {src} --out {out} --dtype float16"


def test_convert_refuses_to_overwrite_its_source_and_unknown_dtypes(tiny_t2v_dir, capsys):
    with pytest.raises(ValueError, match="new directory"):
        convert_weights(tiny_t2v_dir, tiny_t2v_dir)
    with pytest.raises(ValueError, match="unknown weight dtype"):
        convert_weights(tiny_t2v_dir, tiny_t2v_dir.parent / "x", "int4")
    assert cli.main(["convert", "--model", str(tiny_t2v_dir), "--out", "/tmp/x", "--dtype", "int4", "--dry-run"]) == 2
    err = capsys.readouterr().err  # argparse names the flag and its choices, in one line
    assert "--dtype" in err and "float16" in err and "Traceback" not in err
    assert not (tiny_t2v_dir.parent / "x").exists()
