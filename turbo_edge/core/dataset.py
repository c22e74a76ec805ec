"""``data prepare``: a video source -> shards of VAE latents + text embeddings + captions, resumable.

The source is read in one fixed order (``core.sources``). Good clips fill shards of ``shard_size``; shard ``k``
records how many source items it consumed through its last clip and the bad-sample counts up to there, so a killed
run restarts after its last finished shard, skipping (not decoding) the items before. The latents are exactly the
distiller's x0 (the VAE's latent mean times its scaling factor, [F, C, h, w] per clip)
and the text embeddings exactly what it feeds the UNet (``core.sampling.encode_text``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from turbo_edge.core import sources, video_io
from turbo_edge.core.autoencoders import AUTOENCODERS, Autoencoder
from turbo_edge.core.pipeline_io import T2VModel, check_layout, load_teacher, model_family, resolve_model_path
from turbo_edge.core.prepared import (
    INDEX,
    INDEX_FORMAT,
    INDEX_VERSION,
    SHARD_FORMAT,
    SHARD_KEY,
    model_fingerprint,
    read_index,
    sha256_bytes,
    shard_metadata,
    shard_name,
)
from turbo_edge.core.sampling import encode_text
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs.data import LIMITS, DataPrepareConfig, flag_command
from turbo_edge.spec.inputs import check_closed_vocabulary
from turbo_edge.spec.outputs import claim_run_dir, remove_stale, run_lock, staged_file

log = logging.getLogger(__name__)
PER_FRAME = AUTOENCODERS["AutoencoderKL"]
_SHARD = re.compile(r"^shard-(\d{5})\.safetensors$")
_NOT_RUN_KEY = ("out", "overwrite", "threads")  # fields that do not change what is written
# The bad-sample reasons a limit or the trust rule gives, and what each means (named once in a warning and in the
# "no usable clips" error).
LIMITED = ("too_large", "caption_too_long", "outside_source")


def limit_words(reason: str) -> str:
    """What a ``LIMITED`` reason means, with the limits as they are now (``LIMITS``)."""
    return {
        "too_large": (f"too_large: a tar member over {LIMITS['member_bytes']:,} bytes (text {LIMITS['text_member_bytes']:,}), "
                      f"frames over {LIMITS['frame_pixels']:,} pixels or a name over {LIMITS['caption_bytes']:,} bytes"),
        "caption_too_long": f"caption_too_long: a caption over {LIMITS['caption_bytes']:,} bytes",
        "outside_source": "outside_source: a file named outside the source's folder (an absolute path, '..', or a link out of it)",
    }[reason]


def resolve_geometry(model: str | os.PathLike[str], cfg: DataPrepareConfig) -> dict[str, int]:
    """frames / height / width: the flags, else the model card's, else the family's (the autoencoder's sample size, the
    pipeline's frame count). Read from the model's files, so a dataset of another geometry, or one the model's
    autoencoder cannot take (a causal one needs 1 + 4k frames), is refused before any weights load."""
    root = resolve_model_path(model)
    family = model_family(root)
    card = read_card(root)
    vae = json.loads((root / "vae" / "config.json").read_text())
    denoiser = json.loads((root / family.denoiser.folder / "config.json").read_text())
    height = cfg.height or card.height or family.autoencoder.default_size(vae) or 256
    geometry = {"frames": cfg.frames or card.frames or family.default_frames, "height": height, "width": cfg.width or card.width or height}
    try:
        family.autoencoder.config_geometry(vae).check(geometry["frames"], geometry["height"], geometry["width"],
                                                      family.spatial_multiple(vae, denoiser))
    except ValueError as exc:
        raise ValueError(f"--frames / --height / --width: {exc}") from None
    return geometry


def latent_record(model: str | os.PathLike[str], geometry: dict[str, int]) -> dict[str, Any]:
    """The latent geometry a DATA's clips have (from the model's autoencoder config): channels, factors, latent frames."""
    root = resolve_model_path(model)
    geo = model_family(root).autoencoder.config_geometry(json.loads((root / "vae" / "config.json").read_text()))
    return {**geo.to_dict(), "frames": geo.latent_frames(geometry["frames"])}


@torch.no_grad()
def encode_latents(vae, clips: np.ndarray, autoencoder: Autoencoder = PER_FRAME) -> torch.Tensor:
    """uint8 clips [B, F, H, W, 3] -> normalised latents [B, f, C, h, w]: the autoencoder's posterior mean, normalised as
    the denoiser sees it (``core.autoencoders``: times ``scaling_factor`` per frame, or Wan's per-channel mean / std)."""
    return autoencoder.encode(vae, clips)


@torch.no_grad()
def encode_batch(model: T2VModel, clips: list[np.ndarray], captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips [F, H, W, 3] -> latents [B, f, C, h, w] (``encode_latents``) and text [B, L, D]."""
    return encode_latents(model.vae, np.stack(clips), model.components.autoencoder), encode_text(model, captions)


def prepare(cfg: DataPrepareConfig) -> dict[str, Any]:
    """Prepare (or resume preparing) ``cfg.out``; returns its final index."""
    kind = sources.describe(cfg.source)  # a bad --source is refused before anything is written or loaded
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_layout(resolve_model_path(cfg.model))
    fingerprint, files = model_fingerprint(cfg.model)
    geometry = resolve_geometry(cfg.model, cfg)
    remove_stale(Path(cfg.out) / INDEX)  # a run killed while writing its first index left only that temp file
    out = claim_run_dir(cfg.out, INDEX)
    with run_lock(out):  # a second prepare into this --out is refused while this one runs
        return _prepare(cfg, out, kind, fingerprint, files, geometry)


def source_identity(source: str) -> str:
    """What a resume compares: the source's resolved path (links and the working folder resolved; each
    ``::``-joined part of a pattern on its own), so the same relative --source from another folder is another source."""
    return "::".join(str(Path(part).expanduser().resolve()) for part in source.split("::"))


def _prepare(cfg: DataPrepareConfig, out: Path, kind: str, fingerprint: str, files: dict[str, str],
             geometry: dict[str, int]) -> dict[str, Any]:
    config = {k: v for k, v in cfg.fields_dict().items() if k not in _NOT_RUN_KEY}
    config["source"] = source_identity(cfg.source)
    run_key = {"config": config, "model_fingerprint": fingerprint, "geometry": geometry}
    run_id = sha256_bytes(json.dumps(run_key, sort_keys=True).encode())[:16]
    base = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "complete": False, "command": flag_command(cfg, "data prepare"),
        "config": cfg.to_dict(), "run_id": run_id, "run_key": run_key,
        "model": {"path": str(resolve_model_path(cfg.model)), "name": cfg.model, "fingerprint": fingerprint, "files": files},
        "source": {"path": cfg.source, "resolved": config["source"], "kind": kind}, "geometry": geometry, "latent": latent_record(cfg.model, geometry),
        "sampling": cfg.sampling(),
        "layout": {"latents": f"{cfg.dtype} [n, latent frames, latent_channels, h, w]: the autoencoder's latent mean, normalised "
                              "(times scaling_factor, or minus latents_mean over latents_std per channel)",
                   "text": f"{cfg.dtype} [n, tokens, dim]: the text encoder's last hidden state of the padded caption"},
    }
    shards, items, bad = resume_point(out, run_key, run_id, cfg.overwrite)
    index = {**base, "shards": shards, "items": items, "samples": sum(s["samples"] for s in shards), "bad": _counts(bad)}
    if shards and _is_complete(out, run_id):
        log.info("%s is already complete (%d clips in %d shards)", out, index["samples"], len(shards))
        return read_index(out)
    log.info("data prepare: %s %s -> %s (%s, %dx%dx%d, %s)", kind, cfg.source, out, cfg.model, geometry["frames"], geometry["height"],
             geometry["width"], f"{cfg.fps:g} fps" if cfg.fps is not None else f"stride {cfg.stride}")
    model = load_teacher(cfg.model)
    index["model"].update(model.components.autoencoder.normalisation(model.vae))  # the numbers that map latents back
    write_index(out, index)
    if shards:
        log.info("resuming %s after shard %d (%d clips, %d source items done)", out, len(shards) - 1, index["samples"], items)
    _fill(cfg, model, geometry, out, index, run_id)
    return index


def _is_complete(out: Path, run_id: str) -> bool:
    try:
        index = read_index(out)
    except (FileNotFoundError, ValueError):
        return False
    return bool(index.get("complete")) and index.get("run_id") == run_id


def resume_point(out: Path, run_key: dict[str, Any], run_id: str, overwrite: bool) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """The finished shards of ``out`` (each checked against the index), the source items they consumed and the bad
    counts through them. A dataset of another run is refused, or removed with ``overwrite``."""
    if (out / INDEX).is_file():
        old = read_index(out)
        if old.get("run_key") != run_key:
            if not overwrite:
                raise FileExistsError(f"--out {out} holds a dataset prepared with other arguments or another model "
                                      f"({_differences(old.get('run_key') or {}, run_key)}); re-run with its arguments to resume it, "
                                      "pass --overwrite to start over, or choose another --out")
            for f in sorted(out.iterdir()):
                if _SHARD.match(f.name):
                    f.unlink()
            (out / INDEX).unlink()  # last: a folder without its index would be refused as not ours
            log.info("--overwrite: removed the dataset in %s prepared with other arguments", out)
    listed = {s["file"]: s for s in read_index(out)["shards"]} if (out / INDEX).is_file() else {}
    shards, items, bad = [], 0, {}
    for k in range(len(list(out.glob("shard-*.safetensors"))) + 1):
        file = out / shard_name(k)
        if not file.is_file():
            break
        data = file.read_bytes()
        digest = sha256_bytes(data)
        if file.name in listed and listed[file.name]["sha256"] != digest:
            raise ValueError(f"{file} does not match its sha256 in {INDEX} (modified since it was written); "
                             "pass --overwrite to start over, or choose another --out")
        try:
            meta = shard_metadata(data)
        except ValueError as exc:
            raise ValueError(f"{file} is not a readable shard ({exc}); pass --overwrite to start over") from None
        if meta.get("format") != SHARD_FORMAT or meta.get("run_id") != run_id:
            raise FileExistsError(f"{file} was written by another run; pass --overwrite to start over, or choose another --out")
        items, bad = int(meta["items_end"]), dict(meta["bad"])
        shards.append({"file": file.name, "samples": len(meta["captions"]), "sha256": digest, "items_end": items})
    if len(shards) < len(listed):
        raise FileNotFoundError(f"{out} lacks shard {shard_name(len(shards))} listed in {INDEX}; pass --overwrite to start over")
    return shards, items, bad


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("model_fingerprint") != new.get("model_fingerprint"):
        return "another model"
    if old.get("geometry") != new.get("geometry"):
        return f"geometry {old.get('geometry')} -> {new.get('geometry')}"
    a, b = old.get("config") or {}, new.get("config") or {}
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "differs in " + ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:4])


def write_index(out: Path, index: dict[str, Any]) -> None:
    with staged_file(out / INDEX, overwrite=True) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        tmp.chmod(0o644)


def write_shard(out: Path, k: int, latents: list[torch.Tensor], text: list[torch.Tensor], captions: list[str], sources_: list[str],
                items_end: int, bad: dict[str, int], run_id: str, dtype: str) -> dict[str, Any]:
    """Write shard ``k`` whole under a temp name and rename it; never over an existing shard."""
    from safetensors.torch import save

    target = getattr(torch, dtype)
    record = {"format": SHARD_FORMAT, "run_id": run_id, "items_end": items_end, "bad": bad, "captions": captions, "sources": sources_}
    meta = {SHARD_KEY: json.dumps(record, sort_keys=True)}
    data = save({"latents": torch.cat(latents).to(target).contiguous(), "text": torch.cat(text).to(target).contiguous()}, metadata=meta)
    with staged_file(out / shard_name(k), overwrite=False) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # mkstemp's 0600 would hide the data from other users
    return {"file": shard_name(k), "samples": len(captions), "sha256": sha256_bytes(data), "items_end": items_end}


def _fill(cfg: DataPrepareConfig, model: T2VModel, geometry: dict[str, int], out: Path, index: dict[str, Any], run_id: str) -> None:
    frames, height, width = geometry["frames"], geometry["height"], geometry["width"]
    sampling = cfg.sampling()
    bad: Counter[str] = Counter(index["bad"])
    skip = index["items"]
    pending: list[tuple[np.ndarray, str, str]] = []  # decoded, not yet encoded (at most one batch)
    lat, txt, caps, srcs = [], [], [], []  # encoded, not yet written (at most one shard)
    consumed = skip
    bar = tqdm(desc="data prepare", unit="clip", initial=index["samples"], dynamic_ncols=True)

    def encode_pending() -> None:
        z, e = encode_batch(model, [p[0] for p in pending], [p[1] for p in pending])
        lat.append(z)
        txt.append(e)
        caps.extend(p[1] for p in pending)
        srcs.extend(p[2] for p in pending)
        bar.update(len(pending))
        pending.clear()

    def flush(items_end: int) -> None:
        if pending:
            encode_pending()
        shard = write_shard(out, len(index["shards"]), lat, txt, caps, srcs, items_end, _counts(bad), run_id, cfg.dtype)
        index["shards"].append(shard)
        index.update(items=items_end, samples=index["samples"] + shard["samples"], bad=_counts(bad))
        write_index(out, index)
        for held in (lat, txt, caps, srcs):
            held.clear()

    for position, item in enumerate(sources.iter_items(cfg.source, cfg.video_column, cfg.caption_column)):
        if position < skip:
            continue  # consumed by a finished shard
        consumed = position + 1
        try:
            clip = _usable(item, model, frames, height, width, sampling)
        except video_io.BadSample as exc:
            bad[exc.reason] += 1
            if exc.reason in LIMITED and bad[exc.reason] == 1:  # once per reason: which limit, so a user knows what to change
                log.warning("skipped %s (%s); more are counted in the index's bad counts", exc.detail, exc.reason)
            log.debug("skipped %s: %s", item.source, exc)
            bar.set_postfix(bad=sum(bad.values()), refresh=False)
            continue
        pending.append((clip, item.caption, item.source))
        if len(pending) == cfg.batch:
            encode_pending()
        if len(caps) + len(pending) == cfg.shard_size:
            flush(consumed)
    if pending or caps:
        flush(consumed)
    bar.close()
    index.update(items=consumed, bad=_counts(bad))
    if not index["shards"]:
        counts = ", ".join(f"{n} {r}" for r, n in _counts(bad).items() if n) or "no entries at all"
        write_index(out, index)
        limits = "; ".join(limit_words(r) for r in LIMITED if bad.get(r))
        raise ValueError(f"--source {cfg.source} has no usable clips ({counts}); "
                         + (f"{limits}; " if limits else "")
                         + f"check the caption table's columns, the files and --frames {frames} against the videos' lengths")
    index["complete"] = True
    write_index(out, index)
    log.info("prepared %d clips in %d shards in %s (%d source items, %s bad)", index["samples"], len(index["shards"]), out,
             consumed, sum(bad.values()))


def _counts(bad: dict[str, int]) -> dict[str, int]:
    """Every reason, zeros included, in ``REASONS`` order: the index always has the same keys."""
    return {reason: int(bad.get(reason, 0)) for reason in video_io.REASONS}


def _usable(item: sources.Item, model: T2VModel, frames: int, height: int, width: int, sampling: dict[str, Any]) -> np.ndarray:
    """The item's clip, or ``BadSample`` saying why it cannot be used."""
    if item.bad:
        raise video_io.BadSample(item.bad, f"{item.source}: {item.why}" if item.why else item.source)
    try:
        check_closed_vocabulary(item.caption, model.closed_vocabulary)
    except ValueError as exc:
        raise video_io.BadSample("caption_vocabulary", f"{item.source}: {exc}") from None
    return video_io.read_clip(item.video, frames, height, width, fps=sampling["fps"], stride=sampling["stride"] or 1)
