"""A DATA's model fingerprint: what the latents depend on, not how a folder was saved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from turbo_edge.core.prepared import LEGACY_PROVENANCE_KEYS, PreparedData, model_fingerprint


def _copy(src: Path, dst: Path) -> Path:
    for part in ("vae", "text_encoder", "tokenizer"):
        shutil.copytree(src / part, dst / part)
    return dst


def test_tokenizer_load_state_keys_do_not_change_the_fingerprint(wan_test_dir: Path, tmp_path: Path):
    saved = _copy(wan_test_dir, tmp_path / "resaved")
    config = saved / "tokenizer" / "tokenizer_config.json"
    # What transformers 5 adds when it saves a tokenizer it loaded from a folder (a student saved from its teacher).
    config.write_text(json.dumps({**json.loads(config.read_text()), "is_local": True, "local_files_only": False}))
    assert model_fingerprint(saved)[0] == model_fingerprint(wan_test_dir)[0]
    assert model_fingerprint(saved, LEGACY_PROVENANCE_KEYS)[0] != model_fingerprint(wan_test_dir, LEGACY_PROVENANCE_KEYS)[0]
    changed = _copy(wan_test_dir, tmp_path / "changed")
    vocab = changed / "tokenizer" / "tokenizer_config.json"
    vocab.write_text(json.dumps({**json.loads(vocab.read_text()), "model_max_length": 7}))
    assert model_fingerprint(changed)[0] != model_fingerprint(wan_test_dir)[0]  # a real setting still counts


def test_a_data_prepared_under_the_legacy_fingerprint_still_fits_its_model(wan_test_dir: Path, wan_data_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(wan_data_dir, data)
    saved = _copy(wan_test_dir, tmp_path / "model")
    config = saved / "tokenizer" / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "is_local": True}))
    index = json.loads((data / "index.json").read_text())
    index["model"]["fingerprint"] = model_fingerprint(saved, LEGACY_PROVENANCE_KEYS)[0]  # written before the keys were left out
    (data / "index.json").write_text(json.dumps(index))
    PreparedData(data).check_model(saved)  # accepted
    other = _copy(wan_test_dir, tmp_path / "other")
    (other / "vae" / "config.json").write_text(json.dumps({**json.loads((other / "vae" / "config.json").read_text()), "z_dim": 4}))
    with pytest.raises(ValueError, match="prepare the data again"):
        PreparedData(data).check_model(other)


def test_a_model_saved_from_a_float16_teacher_keeps_its_autoencoder_and_text_encoder_bytes(tmp_path: Path):
    """save_model copies the VAE / text encoder folders a model was loaded from while their weights are unchanged
    (a student's, a pruned model's), so it fits its teacher's DATA; a changed VAE is saved anew and no longer fits."""
    import torch

    from turbo_edge.core.pipeline_io import ALIASES, load_teacher, save_model

    src = ALIASES["builtin-dit"]  # float16 on disk, read as float32; UMT5's tied embedding saved once
    model = load_teacher("builtin-dit")
    assert model.vae.dtype == torch.float32
    model.encode_prompts(["a red circle moving left"])  # the tokenizer's call state, which a re-save would write
    same = save_model(model, tmp_path / "same")
    for folder in ("vae", "text_encoder", "tokenizer"):
        for f in (src / folder).iterdir():
            assert (same / folder / f.name).read_bytes() == f.read_bytes(), f
    assert model_fingerprint(same)[0] == model_fingerprint(src)[0]
    with torch.no_grad():
        next(model.vae.decoder.parameters()).view(-1)[0] += 1e-3
    changed = save_model(model, tmp_path / "changed")
    assert (changed / "text_encoder" / "model.safetensors").read_bytes() == (src / "text_encoder" / "model.safetensors").read_bytes()
    assert (changed / "vae" / "diffusion_pytorch_model.safetensors").stat().st_size > (src / "vae" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert model_fingerprint(changed)[0] != model_fingerprint(src)[0]
    reloaded = load_teacher(changed)
    assert torch.equal(next(reloaded.vae.decoder.parameters()), next(model.vae.decoder.parameters()))
