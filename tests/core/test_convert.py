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


def test_decoders_from_gives_a_copy_another_models_decoder_over_the_same_autoencoder(tiny_t2v_dir, tmp_path, capsys):
    """A student's tiny decoder fits the pruned model made from it (pruning never touches the VAE): `convert
    --decoders-from` copies the folder and the card entry with its lineage; another autoencoder is refused."""
    import dataclasses

    from tiny_models import copy_with_moved_vae_weight

    from turbo_edge.core.tiny_decoder import TinyDecoder, load_decoder_variant
    from turbo_edge.spec.card import DecoderVariant, Lineage, read_card, write_card

    donor = tmp_path / "donor"
    shutil.copytree(tiny_t2v_dir, donor)
    torch.manual_seed(0)
    tiny = TinyDecoder.for_autoencoder_kl(json.loads((donor / "vae" / "config.json").read_text()), width=8)
    tiny.save_pretrained(donor / "tiny_vae", safe_serialization=True)
    variant = DecoderVariant(folder="tiny_vae", cls="TinyDecoder", lineage=Lineage(stage="decoder_train", parent=str(tiny_t2v_dir), step=7),
                             quality={"psnr_db": 30.0})
    write_card(dataclasses.replace(read_card(donor), decoders={"tiny": variant}), donor)
    src = tmp_path / "src"  # the model that gains the decoder, with the line that made it
    shutil.copytree(tiny_t2v_dir, src)
    write_card(dataclasses.replace(read_card(src), reproduce="turbo-edge prune --student S"), src)
    assert cli.main(["convert", "--model", str(src), "--out", str(tmp_path / "half"), "--decoders-from", str(donor)]) == 0
    card = read_card(tmp_path / "half")
    assert card.decoders["tiny"].lineage.step == 7 and card.decoders["tiny"].quality == {"psnr_db": 30.0}
    assert card.reproduce.startswith("turbo-edge prune --student S && turbo-edge convert") and f"--decoders-from {donor}" in card.reproduce
    assert card.weights_dtype == "float16"
    copied = load_decoder_variant(tmp_path / "half", "tiny")
    for name, p in tiny.state_dict().items():  # converted with the rest: float16 on disk, read back as float32
        assert torch.equal(copied.state_dict()[name], p.half().float()), name
    capsys.readouterr()
    # The same decoder offered to a model with another autoencoder: refused in one line, nothing written.
    other = copy_with_moved_vae_weight(tiny_t2v_dir, tmp_path / "other", "decoder.conv_out.bias", 1.0)
    assert cli.main(["convert", "--model", str(other), "--out", str(tmp_path / "bad"), "--decoders-from", str(donor)]) == 2
    err = capsys.readouterr().err
    assert "autoencoder differs" in err and "decoder.conv_out.bias" in err and not (tmp_path / "bad").exists()
    # A model that already has that decoder, and a donor without any: refused too.
    assert cli.main(["convert", "--model", str(donor), "--out", str(tmp_path / "twice"), "--decoders-from", str(donor)]) == 2
    assert "already has decoder(s) ['tiny']; add --replace-decoders" in capsys.readouterr().err
    assert cli.main(["convert", "--model", str(tiny_t2v_dir), "--out", str(tmp_path / "none"), "--decoders-from", str(other)]) == 2
    assert "has no decoder variants" in capsys.readouterr().err


def test_replace_decoders_swaps_a_variant_folder_and_card_entry(tiny_t2v_dir, tmp_path, capsys):
    """A retrained decoder replaces the one a model ships: `--replace-decoders` drops the model's own variant of that
    name (its folder is not copied; the donor's is) and keeps the others; without --decoders-from it is refused."""
    import dataclasses

    from turbo_edge.core.tiny_decoder import TinyDecoder, load_decoder_variant
    from turbo_edge.spec.card import DecoderVariant, Lineage, read_card, write_card

    def with_tiny(path, seed, folder, extra=None):
        shutil.copytree(tiny_t2v_dir, path)
        torch.manual_seed(seed)
        tiny = TinyDecoder.for_autoencoder_kl(json.loads((path / "vae" / "config.json").read_text()), width=8)
        tiny.save_pretrained(path / folder, safe_serialization=True)
        decoders = {"tiny": DecoderVariant(folder=folder, cls="TinyDecoder", lineage=Lineage(stage="decoder_train", parent="x", step=seed))}
        for name, sub in (extra or {}).items():
            tiny.save_pretrained(path / sub, safe_serialization=True)
            decoders[name] = DecoderVariant(folder=sub, cls="TinyDecoder", lineage=Lineage(stage="decoder_train", parent="x", step=99))
        write_card(dataclasses.replace(read_card(path), decoders=decoders, reproduce=f"turbo-edge decoder train --seed {seed}"), path)
        return tiny

    with_tiny(tmp_path / "old", 1, "tiny_vae_v1", extra={"other": "other_vae"})
    new = with_tiny(tmp_path / "new", 2, "tiny_vae")
    out = tmp_path / "out"
    assert cli.main(["convert", "--model", str(tmp_path / "old"), "--out", str(out), "--dtype", "float32",
                     "--decoders-from", str(tmp_path / "new"), "--replace-decoders"]) == 0
    card = read_card(out)
    assert card.decoders["tiny"].folder == "tiny_vae" and card.decoders["tiny"].lineage.step == 2
    assert card.decoders["other"].lineage.step == 99 and (out / "other_vae").is_dir()
    assert not (out / "tiny_vae_v1").exists()  # the replaced variant's folder is gone, not left beside the new one
    assert card.reproduce.startswith("turbo-edge decoder train --seed 1 && turbo-edge convert") and card.reproduce.endswith("--replace-decoders")
    copied = load_decoder_variant(out, "tiny")
    for name, p in new.state_dict().items():
        assert torch.equal(copied.state_dict()[name], p), name
    capsys.readouterr()
    # The donor's folder name is another kept variant's folder: refused, nothing written.
    with_tiny(tmp_path / "clash", 3, "other_vae")
    assert cli.main(["convert", "--model", str(tmp_path / "old"), "--out", str(tmp_path / "bad"), "--decoders-from", str(tmp_path / "clash"),
                     "--replace-decoders"]) == 2
    assert "['other_vae'] hold" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert cli.main(["convert", "--model", str(tmp_path / "old"), "--out", str(tmp_path / "bad"), "--replace-decoders"]) == 2
    assert "give it too" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    # --only-decoders takes some of the donor's variants: "other" from old2, the copy's own "tiny" kept.
    with_tiny(tmp_path / "old2", 4, "tiny_vae", extra={"other": "other_vae"})
    picked = tmp_path / "picked"
    assert cli.main(["convert", "--model", str(tmp_path / "new"), "--out", str(picked), "--dtype", "float32", "--decoders-from",
                     str(tmp_path / "old2"), "--only-decoders", "other"]) == 0
    card = read_card(picked)
    assert card.decoders["tiny"].lineage.step == 2 and card.decoders["other"].lineage.step == 99 and "--only-decoders other" in card.reproduce
    assert cli.main(["convert", "--model", str(tmp_path / "new"), "--out", str(tmp_path / "bad"), "--decoders-from", str(tmp_path / "old2"),
                     "--only-decoders", "pruned"]) == 2
    assert "has no decoder(s) ['pruned']; it has ['other', 'tiny']" in capsys.readouterr().err and not (tmp_path / "bad").exists()
