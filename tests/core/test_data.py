"""The encoded-dataset cache: reused only for the same VAE weights and world setting."""

from __future__ import annotations

import numpy as np
import torch

from turbo_edge.core import data
from turbo_edge.core.pipeline_io import load_teacher


def test_cache_is_reused_for_the_same_vae_and_redone_for_another(tiny_t2v_dir, tmp_path, monkeypatch):
    vae = load_teacher(tiny_t2v_dir).vae
    lat, lab = data.encode_world(vae, 8, 0, tmp_path)
    assert lat.shape[0] == 8 and lab.shape == (8, 3) and (tmp_path / "dataset.json").is_file()

    encoded = []
    real_batch = data.world.batch
    monkeypatch.setattr(data.world, "batch", lambda *a: encoded.append(a) or real_batch(*a))
    again, _ = data.encode_world(vae, 8, 0, tmp_path)
    assert encoded == [] and np.array_equal(again, lat)  # same VAE, same setting: read back

    data.encode_world(vae, 8, 1, tmp_path)  # another seed: other clips
    assert len(encoded) == 1
    with torch.no_grad():
        next(vae.parameters()).add_(0.5)  # another VAE (a changed teacher) must not reuse the latents
    changed, _ = data.encode_world(vae, 8, 1, tmp_path)
    assert len(encoded) == 2 and not np.array_equal(changed, lat)


def test_cache_without_its_key_is_redone(tiny_t2v_dir, tmp_path):
    vae = load_teacher(tiny_t2v_dir).vae
    data.encode_world(vae, 4, 0, tmp_path)
    (tmp_path / "dataset.json").unlink()  # e.g. an encode killed after the latents landed, or an older cache
    np.save(tmp_path / "latents.npy", np.zeros((4, 1), dtype=np.float16))
    lat, _ = data.encode_world(vae, 4, 0, tmp_path)
    assert lat.ndim == 5


def test_an_encode_killed_half_way_never_leaves_a_cache_that_matches(tiny_t2v_dir, tmp_path, monkeypatch):
    vae = load_teacher(tiny_t2v_dir).vae
    _, labels0 = data.encode_world(vae, 8, 0, tmp_path)
    real_save = np.save

    def killed(path, arr, *a, **kw):
        if str(path).endswith("latents.tmp.npy"):
            raise KeyboardInterrupt("killed after the labels landed, before the latents")
        return real_save(path, arr, *a, **kw)

    monkeypatch.setattr(data.np, "save", killed)
    try:
        data.encode_world(vae, 8, 1, tmp_path)  # another setting: re-encodes over the seed-0 cache
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(data.np, "save", real_save)
    _, labels = data.encode_world(vae, 8, 0, tmp_path)  # seed 0 again: its labels, not seed 1's beside old latents
    assert np.array_equal(labels, labels0)
