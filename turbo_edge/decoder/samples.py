"""``turbo-edge decoder samples``: a prepared dataset of a consistency student's own final latents, resumable.

A tiny decoder trained only on encoded videos decodes the latents of real clips; at deployment it decodes the
student's 4-step samples, which lie elsewhere in the latent space (docs/decisions.md: the DiT tiny decoder scored
35.0 dB on held-out encoded clips and 31.0 dB on the student's samples). This command writes those samples in the
prepared-data format (``core.prepared``: index + safetensors shards of latents [n, F, C, h, w] and text [n, L, D]),
so ``decoder train --data`` reads them with every check and resume rule a DATA has; the full decoder's frames of
them are the target, as for any latents.

The prompts are a prepared dataset's captions in index order, or the synthetic world's training prompts, cycled to
``clips``; clip ``i`` draws the runtime's noise stream ``i`` of ``seed`` (``core.student_sampling``), so shard ``k``
is a pure function of the arguments and a killed run restarts after its last finished shard with the same bytes.
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from turbo_edge.core.dataset import latent_record, resolve_geometry, resume_point, write_index, write_shard
from turbo_edge.core.pipeline_io import check_layout, load_teacher, model_family, resolve_model_path
from turbo_edge.core.prepared import (
    INDEX,
    INDEX_FORMAT,
    INDEX_VERSION,
    PreparedData,
    _file_sha256,
    model_fingerprint,
    read_index,
    sha256_bytes,
)
from turbo_edge.core.sampling import check_prompts
from turbo_edge.core.student_sampling import sampler_contract, student_latents, student_timesteps
from turbo_edge.spec.card import CARD_FILE, read_card
from turbo_edge.spec.configs.data import flag_command
from turbo_edge.spec.configs.train import DecoderSamplesConfig
from turbo_edge.spec.outputs import claim_run_dir, remove_stale, run_lock

log = logging.getLogger(__name__)
SOURCE_KIND = "student-samples"  # index["source"]["kind"]: latents sampled by a student, no videos behind them
_NOT_RUN_KEY = ("out", "overwrite", "threads", "batch")  # what does not change the bytes written


def student_identity(root: Path) -> str:
    """sha256 over the denoiser's files and the card (its sampler): what decides the samples beyond the autoencoder and
    text encoder the DATA fingerprint covers, so a resume with another student is refused."""
    folder = model_family(root).denoiser.folder
    files = {f.relative_to(root).as_posix(): _file_sha256(f) for f in [*sorted((root / folder).rglob("*")), root / CARD_FILE] if f.is_file()}
    return sha256_bytes(json.dumps(files, sort_keys=True).encode())


def prompts_for(cfg: DecoderSamplesConfig) -> list[str]:
    """``clips`` prompts: the captions of ``cfg.captions`` (a prepared dataset, index order) or the world's training
    prompts (a balanced seeded order), cycled."""
    if cfg.captions:
        data = PreparedData(cfg.captions)
        captions = [c for k in range(len(data.shards)) for c in data.shard_captions(k)]
        captions = [c for c in captions if c.strip()]
        if not captions:
            raise ValueError(f"--captions {cfg.captions} holds no non-empty caption; give a dataset with captions, or leave it out")
    else:
        from turbo_edge.core import world

        captions = [a.prompt for a in world.prompt_set("train", min(cfg.clips, len(world.combinations("train"))), seed=cfg.seed)]
    return [captions[i % len(captions)] for i in range(cfg.clips)]


def samples(cfg: DecoderSamplesConfig) -> dict[str, Any]:
    """Write (or resume writing) ``cfg.out``; returns its final index."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root = resolve_model_path(cfg.model)
    check_layout(root)
    card = read_card(root)
    if card.sampler is None or card.sampler.kind != "consistency":  # before any weights load or anything is written
        raise ValueError(f"--model {cfg.model} is not a consistency student (its turbo_edge.json has no consistency sampler): "
                         "decoder samples draws a student's own latents; give a distilled or pruned student")
    student_timesteps(card.sampler, cfg.steps)
    prompts = prompts_for(cfg)
    fingerprint, files = model_fingerprint(cfg.model)
    geometry = resolve_geometry(cfg.model, types.SimpleNamespace(frames=None, height=None, width=None))
    remove_stale(Path(cfg.out) / INDEX)
    out = claim_run_dir(cfg.out, INDEX)
    with run_lock(out):
        return _samples(cfg, out, prompts, root, fingerprint, files, geometry)


def _samples(cfg: DecoderSamplesConfig, out: Path, prompts: list[str], root: Path, fingerprint: str, files: dict[str, str],
             geometry: dict[str, int]) -> dict[str, Any]:
    config = {k: v for k, v in cfg.fields_dict().items() if k not in _NOT_RUN_KEY}
    config["captions"] = str(Path(cfg.captions).resolve()) if cfg.captions else None
    run_key = {"config": config, "model_fingerprint": fingerprint, "student": student_identity(root), "geometry": geometry,
               "prompts": sha256_bytes("\n".join(prompts).encode())}
    run_id = sha256_bytes(json.dumps(run_key, sort_keys=True).encode())[:16]
    index: dict[str, Any] = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "complete": False, "command": flag_command(cfg, "decoder samples"),
        "config": cfg.to_dict(), "run_id": run_id, "run_key": run_key,
        "model": {"path": str(root), "name": cfg.model, "fingerprint": fingerprint, "files": files},
        "source": {"path": f"{cfg.model} ({cfg.steps}-step samples)", "kind": SOURCE_KIND,
                   "captions": cfg.captions or "the synthetic world's training prompts"},
        "geometry": geometry, "latent": latent_record(cfg.model, geometry),
        "sampling": {"steps": cfg.steps, "guidance": cfg.guidance, "seed": cfg.seed},
        "layout": {"latents": f"{cfg.dtype} [n, latent frames, latent_channels, h, w]: the student's final latents, in the denoiser's "
                              "normalised space (what its decoder divides back)",
                   "text": f"{cfg.dtype} [n, tokens, dim]: the text encoder's last hidden state of the prompt"},
    }
    shards, done, _ = resume_point(out, run_key, run_id, cfg.overwrite)
    index.update(shards=shards, items=done, samples=sum(s["samples"] for s in shards), bad={})
    if done >= len(prompts):
        if not read_index(out).get("complete"):
            index["complete"] = True
            write_index(out, index)
        log.info("%s is already complete (%d samples in %d shards)", out, index["samples"], len(shards))
        return read_index(out)
    model = load_teacher(cfg.model)
    sampler_contract(model)
    check_prompts(model, sorted(set(prompts)))  # a caption the model cannot read is refused before the index is written
    index["model"].update(model.components.autoencoder.normalisation(model.vae))
    write_index(out, index)
    if shards:
        log.info("resuming %s after shard %d (%d samples)", out, len(shards) - 1, done)
    bar = tqdm(desc="decoder samples", unit="clip", total=len(prompts), initial=done, dynamic_ncols=True)
    while done < len(prompts):
        end = min(done + cfg.shard_size, len(prompts))
        chunk = prompts[done:end]
        latents, text = [], []  # the sampler's own text condition is what the shard stores: each prompt encoded once
        for z in student_latents(model, chunk, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed, batch_size=cfg.batch, first=done,
                                 on_text=text.append):
            latents.append(z.permute(0, 2, 1, 3, 4).contiguous())  # [b, C, F, h, w] -> the DATA's [b, F, C, h, w]
            bar.update(len(z))
        sources = [f"sample {i}" for i in range(done, end)]
        shard = write_shard(out, len(index["shards"]), latents, text, chunk, sources, end, {}, run_id, cfg.dtype)
        index["shards"].append(shard)
        index.update(items=end, samples=index["samples"] + shard["samples"])
        write_index(out, index)
        done = end
    bar.close()
    index["complete"] = True
    write_index(out, index)
    return index
