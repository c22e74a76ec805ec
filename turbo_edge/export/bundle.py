"""``export_bundle``: a model directory -> a verified bundle directory, written atomically.

Steps (each a function, so a failure names its step; the bundle appears only after all of them passed):
  1. load the model and resolve the export shapes;
  2. export each component to fp32 ONNX and gate it on parity with PyTorch;
  3. fp16 graphs, gated the same way;
  4. int8 UNet calibrated on the model's own sampler trajectory, gated on mean relative error: Q/DQ ONNX gated on
     ONNX Runtime, or (``int8_format`` openvino, "auto" for a UNet graph over 2 GiB) OpenVINO IR gated on OpenVINO;
  5. OpenVINO accuracy of the same files (measured, not gated);
  6. tokenizer files (tokenizer.json, or vocab.json + merges.txt: what the model has), configs, parity report, manifest with every file's sha256;
  7. rename the temp directory into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from turbo_edge import __version__
from turbo_edge.core.pipeline_io import T2VModel, check_layout, load_teacher, resolve_model_path
from turbo_edge.export import calibration_prompts, dit
from turbo_edge.export.contracts import Contract, ExportShapes, build_components, decoder_variant_component, latent_hw
from turbo_edge.export.onnx_export import export_onnx, run_torch
from turbo_edge.export.parity import ParityError, ParityResult, check_parity, openvino_runner, ort_runner
from turbo_edge.export.quantize import (
    CALIBRATION_SOURCES,
    CalibrationSource,
    Int8Options,
    convert_fp16,
    decoder_calibration,
    quantize_int8,
    quantize_int8_openvino,
)
from turbo_edge.spec import bundle as schema
from turbo_edge.spec.configs import ExportConfig
from turbo_edge.spec.configs.deploy import INT8_QDQ_MAX_BYTES
from turbo_edge.spec.errors import BundleError
from turbo_edge.spec.outputs import check_replaceable, staged_dir
from turbo_edge.spec.sampler import SamplerSpec
from turbo_edge.spec.tokenizer import bpe_files

log = logging.getLogger(__name__)

# int8 is Q/DQ ONNX or, with int8_format=openvino, OpenVINO IR (its weights in the .bin beside the .xml)
FILE_NAMES = {"fp32": "{name}.onnx", "fp16": "{name}.fp16.onnx", "int8": "{name}.int8.onnx", "int8_openvino": "{name}.int8.xml"}
# int8_format -> the manifest's file format (spec.bundle.FORMATS); a file format -> the backend its parity gate runs on.
INT8_FILE_FORMAT = {"qdq": "onnx", "openvino": "openvino"}
GATED_ON = {"onnx": "onnxruntime", "openvino": "openvino"}
TOKENIZER_CONFIG = "tokenizer_config.json"


def model_hash(path: Path) -> str:
    """sha256 over every file of a model directory (names and bytes): a retrained model is a new source."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(schema.sha256_file(f).encode())
    return h.hexdigest()


def toolchain() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"turbo_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def source_hash(cfg: ExportConfig, model_dir: Path) -> str:
    """What produced a bundle: config, model bytes and toolchain. Equal hashes -> the bundle is reused."""
    key = json.dumps({"config": cfg.content_hash(), "model": model_hash(model_dir), "toolchain": toolchain()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def sampler_contract(model: T2VModel, cfg: ExportConfig) -> SamplerSpec:
    """The contract the bundle carries: a student's own (from its card), or DDIM + CFG for a teacher; the export
    config's step counts and guidance override, and the noise schedule's numbers are filled in. A DiT: ``dit.sampler_contract``."""
    if dit.is_dit(model):
        return dit.sampler_contract(model, cfg)
    if model.card.sampler is not None:
        sampler = model.card.sampler
    else:
        sampler = SamplerSpec.ddim_cfg(model.scheduler_config, guidance=model.card.default_guidance)
    sampler = sampler.with_steps(cfg.default_steps, cfg.supported_steps, cfg.guidance)
    w_dim = model.unet.config.get("time_cond_proj_dim")
    if sampler.kind == "consistency" and sampler.w_embedding_dim != (int(w_dim) if w_dim else None):
        raise BundleError(f"{model.path}: the card's w_embedding_dim {sampler.w_embedding_dim} differs from the UNet's time_cond_proj_dim {w_dim}")
    return sampler.with_schedule(model.scheduler_config)


def resolve_shapes(model: Any, cfg: ExportConfig, uses_cfg: bool) -> ExportShapes:
    if dit.is_dit(model):
        return dit.resolve_shapes(model, cfg, uses_cfg)
    frames = cfg.frames or int(model.card.frames or 16)
    height = cfg.height or int(model.vae.config.sample_size)
    width = cfg.width or height
    return ExportShapes(
        frames, height, width, max_batch=cfg.max_batch, min_frames=min(cfg.min_frames, frames),
        max_frames=cfg.max_frames or frames, static=cfg.static, dynamic_spatial=cfg.dynamic_spatial, uses_cfg=uses_cfg,
    )


def with_tolerances(contract: Contract, cfg: ExportConfig) -> Contract:
    from dataclasses import replace

    tol = dict(contract.tolerance)
    for precision, value in cfg.tolerances().items():
        if value is not None:
            tol[precision] = (tol[precision][0], float(value))
    return replace(contract, tolerance=tol)


def gate(result: ParityResult, component: str, precision: str) -> ParityResult:
    if not result.passed:
        raise ParityError(
            f"{component} {precision} graph fails parity with PyTorch: {result.metric} {getattr(result, result.metric):.3g} "
            f"> tolerance {result.tolerance:.3g} (max_abs {result.max_abs:.3g}, mean_rel {result.mean_rel:.3g}); no bundle written"
        )
    return result


def export_component(name: str, contract: Contract, module: Any, tmp: Path, cfg: ExportConfig) -> tuple[dict[str, str], dict[str, ParityResult]]:
    """Step 2-3: fp32 (and fp16) graphs of one component, each gated on parity."""
    files: dict[str, str] = {}
    parity: dict[str, ParityResult] = {}
    ref = lambda feeds: run_torch(module, contract, feeds)  # noqa: E731
    fp32 = tmp / FILE_NAMES["fp32"].format(name=name)
    export_onnx(module, contract, fp32, opset=cfg.opset, external_data_threshold=cfg.external_data_threshold)
    parity["fp32"] = gate(check_parity(contract, "fp32", ref, ort_runner(fp32, cfg.threads)), name, "fp32")
    files["fp32"] = fp32.name
    if "fp16" in cfg.precisions and (schema.FULL_DECODER_COMPONENTS.get(name, name)) in cfg.fp16_components:
        fp16 = tmp / FILE_NAMES["fp16"].format(name=name)
        convert_fp16(fp32, fp16, external_data_threshold=cfg.external_data_threshold)
        parity["fp16"] = gate(check_parity(contract, "fp16", ref, ort_runner(fp16, cfg.threads)), name, "fp16")
        files["fp16"] = fp16.name
    return files, parity


def resolve_int8_format(cfg: ExportConfig, fp32_unet: Path) -> ExportConfig:
    """``int8_format`` "auto" -> "openvino" when the fp32 UNet graph (with its external data) is over
    ``INT8_QDQ_MAX_BYTES``, else "qdq"; resolved once that graph exists, so the saved config names the format used."""
    if cfg.int8_format != "auto":
        return cfg
    size = sum(f.stat().st_size for f in (fp32_unet, fp32_unet.with_name(fp32_unet.name + ".data")) if f.is_file())
    fmt = "openvino" if size > INT8_QDQ_MAX_BYTES else "qdq"
    log.info("int8_format auto: %s (fp32 UNet graph %.2f GB, Q/DQ up to %.2f GB)", fmt, size / 1e9, INT8_QDQ_MAX_BYTES / 1e9)
    return cfg.replace(int8_format=fmt)


def export_int8_unet(
    model: Any, contract: Contract, module: Any, tmp: Path, cfg: ExportConfig, shapes: ExportShapes, source: CalibrationSource
) -> tuple[str, ParityResult, list[dict[str, np.ndarray]]]:
    """Step 4: NNCF int8 of the fp32 UNet graph in ``cfg.int8_format`` (resolved), calibrated and measured on the
    sampler's own inputs, on the backend that format runs on."""
    feeds = source(model, cfg, shapes, tuple(t.name for t in contract.inputs))
    fp32, options = tmp / FILE_NAMES["fp32"].format(name="unet"), Int8Options.from_config(cfg)
    if cfg.int8_format == "openvino":
        int8 = tmp / FILE_NAMES["int8_openvino"].format(name="unet")
        quantize_int8_openvino(fp32, int8, feeds, options)
    else:
        int8 = tmp / FILE_NAMES["int8"].format(name="unet")
        quantize_int8(fp32, int8, feeds, options, external_data_threshold=cfg.external_data_threshold)
    # Measured on up to 8 of the trajectory's own inputs, spread over its timesteps (they were also calibration
    # inputs: the gate asks "does int8 track fp32 on the sampler's distribution", not generalisation).
    probe = feeds[:: max(1, len(feeds) // 8)][:8]
    ref = lambda f: run_torch(module, contract, f)  # noqa: E731
    if cfg.int8_format == "openvino":
        runner = openvino_runner(int8, cfg.threads, warmup=contract.sample_inputs("opt"))
    else:
        runner = ort_runner(int8, cfg.threads)
    result = gate(check_parity(contract, "int8", ref, runner, feeds=probe), "unet", "int8")
    return int8.name, result, probe


def openvino_report(tmp: Path, components: dict[str, tuple[Contract, Any]], files: dict[str, dict[str, str]], formats: dict[str, dict[str, str]],
                    cfg: ExportConfig, int8_feeds: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, Any]:
    """Step 5: accuracy of the same ONNX files on OpenVINO CPU (fp32, bf16 hint, int8). Measured, not gated."""
    report: dict[str, Any] = {}
    for name, (contract, module) in components.items():
        ref = lambda f, c=contract, m=module: run_torch(m, c, f)  # noqa: E731
        # label -> (graph file's precision, OpenVINO inference precision, inputs, tolerance to report against);
        # bf16 runs the fp32 graph in bf16 and is held to the fp16 tolerance.
        runs = {"fp32": ("fp32", "f32", None, "fp32"), "bf16": ("fp32", "bf16", None, "fp16")}
        if formats[name].get("int8") == "onnx":  # an IR's int8 gate already ran on OpenVINO
            runs["int8"] = ("int8", "f32", int8_feeds.get(name), "int8")
        for label, (precision, hint, feeds, tol_key) in runs.items():
            try:
                result = check_parity(contract, tol_key, ref, openvino_runner(tmp / files[name][precision], cfg.threads, hint, warmup=contract.sample_inputs("opt")), feeds=feeds)
                report.setdefault(name, {})[label] = result.to_dict()
            except Exception as exc:  # a backend that cannot run a graph is a finding for the report, not a failed export
                report.setdefault(name, {})[label] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def decoder_variants(model: T2VModel, model_dir: Path, shapes: ExportShapes, cfg: ExportConfig) -> dict[str, tuple[Contract, Any]]:
    """``--decoder``'s variants (every name but "full") as components ``vae_decoder_NAME``: loaded from the model
    directory by its card (``core.tiny_decoder.load_decoder_variant``, which refuses, in one line naming the decoders
    the model has, a name it lacks), with the family's contract (``contracts.decoder_variant_component``, a DiT's
    ``dit.decoder_variant_component``: the causal autoencoder's frame count)."""
    from turbo_edge.core.tiny_decoder import load_decoder_variant

    out: dict[str, tuple[Contract, Any]] = {}
    for name in cfg.decoders:
        if name != schema.FULL_DECODER:
            try:
                module = load_decoder_variant(model_dir, name)
            except ValueError as exc:
                raise BundleError(str(exc)) from None
            build = dit.decoder_variant_component if dit.is_dit(model) else decoder_variant_component
            contract, wrapper = build(model, shapes, name, module)
            out[contract.name] = (with_tolerances(contract, cfg), wrapper)
    return out


def export_int8_decoder(name: str, contract: Contract, module: Any, tmp: Path, cfg: ExportConfig,
                        feeds: list[dict[str, np.ndarray]]) -> tuple[str | None, ParityResult, list[dict[str, np.ndarray]], str]:
    """int8 (Q/DQ ONNX, NNCF's default preset: a decoder is convolutions) of a decoder variant's fp32 graph, calibrated
    on the sampler's own final latents and gated like the UNet's, on ONNX Runtime and then OpenVINO (both read the file;
    OpenVINO 2026.4 ran the tiny decoder's Q/DQ graph at mean relative error ~0.3 where ONNX Runtime held 0.01). A
    decoder's int8 is optional: where a gate fails the file is removed and the bundle keeps its fp32 graph (the result,
    with the backend, stays in parity.json's ``int8_rejected``)."""
    from dataclasses import replace

    int8 = tmp / FILE_NAMES["int8"].format(name=name)
    written = quantize_int8(tmp / FILE_NAMES["fp32"].format(name=name), int8, feeds, replace(Int8Options.from_config(cfg), model_type="default"),
                            external_data_threshold=cfg.external_data_threshold)
    probe = feeds[:8]
    ref = lambda f: run_torch(module, contract, f)  # noqa: E731
    ort = check_parity(contract, "int8", ref, ort_runner(int8, cfg.threads), feeds=probe)
    result, backend = ort, "onnxruntime"
    if ort.passed:  # every backend that reads a Q/DQ graph must hold it: OpenVINO too
        ov = check_parity(contract, "int8", ref, openvino_runner(int8, cfg.threads, warmup=contract.sample_inputs("opt")), feeds=probe)
        if not ov.passed:
            result, backend = ov, "openvino"
    if not result.passed:
        for f in written:
            f.unlink(missing_ok=True)
        log.warning("%s int8 fails its gate on %s (%s %.3g > %.3g): the bundle keeps its fp32 graph only", name, backend, result.metric,
                    getattr(result, result.metric), result.tolerance)
        return None, result, probe, backend
    return int8.name, ort, probe, "onnxruntime"  # the manifest's parity names its backend: ONNX Runtime's result (OpenVINO's: parity.json)


def decoders_section(cfg: ExportConfig, components: dict[str, tuple[Contract, Any]], model_dir: Path) -> dict[str, Any] | None:
    """The manifest's ``decoders``: each exported decoder's component, layout, class and measured quality (from the
    model card), and the default (the first of ``--decoder``). None where only the full decoder is exported, so such
    bundles stay as they were."""
    from turbo_edge.spec.card import read_card

    names = [n for n in cfg.decoders if schema.decoder_component(n) in components]
    if names in ([], [schema.FULL_DECODER]):
        return None
    card = read_card(model_dir).decoders
    full = components.get("vae_decoder", (None, None))[0]
    full_layout = "video" if full is not None and len(full.inputs[0].shape) == 5 else "frames"  # a causal autoencoder's whole-clip graph
    if schema.DECODER_FIRST_STEP in components:  # its step graphs (a range of clip lengths)
        full_layout = "steps"
    variants = {}
    for name in names:
        entry: dict[str, Any] = {"component": schema.decoder_component(name), "layout": full_layout if name == schema.FULL_DECODER else "clip"}
        if name in card:
            entry |= {"class": card[name].cls, "quality": card[name].quality}
        variants[name] = entry
    return {"default": names[0], "variants": variants}


def copy_tokenizer(model_dir: Path, tmp: Path) -> None:
    """Copy the files the runtime tokenizers read: the BPE (``spec.tokenizer.bpe_files``) and tokenizer_config.json."""
    src, out = model_dir / "tokenizer", tmp / "tokenizer"
    try:
        names = [*bpe_files(src), TOKENIZER_CONFIG]
    except FileNotFoundError as exc:
        raise BundleError(str(exc)) from None
    if not (src / TOKENIZER_CONFIG).is_file():
        raise BundleError(f"{src} lacks {TOKENIZER_CONFIG}, which the runtime tokenizer reads; save the tokenizer there again")
    out.mkdir()
    for name in names:
        shutil.copy2(src / name, out / name)


def describe(model: Any, shapes: ExportShapes, components: dict[str, tuple[Contract, Any]]) -> dict[str, Any]:
    if dit.is_dit(model):
        return dit.describe(model, shapes, components)
    h, w = latent_hw(model, shapes)
    enc = components.get("text_encoder", (None, None))[0]
    length = enc.inputs[0].shape[1] if enc else min(int(model.tokenizer.model_max_length), int(model.text_encoder.config.max_position_embeddings))
    return {
        "latent": {"channels": int(model.unet.config.in_channels), "frames": shapes.frames, "height": h, "width": w,
                   "scaling_factor": float(model.vae.config.scaling_factor)},
        "video": {"frames": shapes.frames, "height": shapes.height, "width": shapes.width, "fps": int(model.card.fps)},
        "text": {"max_length": int(length), "hidden_size": int(model.text_encoder.config.hidden_size),
                 "closed_vocabulary": model.closed_vocabulary},
    }


def reusable(out: Path, config_hash: str) -> bool:
    if not (out / schema.MANIFEST).is_file():
        return False
    try:
        manifest = schema.verify_bundle(out)
    except BundleError as exc:
        log.warning("existing bundle at %s does not verify (%s); exporting again", out, exc)
        return False
    return manifest["source"].get("config_hash") == config_hash


def export_bundle(model: str | Path, out: str | Path, config: ExportConfig | None = None,
                  calibration: CalibrationSource | None = None) -> Path:
    """Export ``model`` (alias or diffusers dir) into the bundle directory ``out``; return ``out``.

    ``calibration`` supplies int8 calibration inputs; by default the one registered for the model's sampler
    kind (``quantize.CALIBRATION_SOURCES``). An existing bundle made from the same model, config and toolchain
    is verified and reused.
    """
    import torch

    cfg = calibration_prompts.resolve((config or ExportConfig()).replace(model=str(model), out=str(out)))
    out = Path(out)
    model_dir = resolve_model_path(model)
    check_layout(model_dir)  # a missing component fails here, naming it, before anything is written
    config_hash = source_hash(cfg, model_dir)
    if reusable(out, config_hash):
        log.info("reusing bundle %s: same model, config and toolchain (config_hash %s)", out, config_hash)
        return out
    check_replaceable(out, schema.MANIFEST, cfg.overwrite)  # before the model loads

    torch.set_num_threads(cfg.threads)
    t2v = load_teacher(model_dir)
    if dit.is_dit(t2v):
        cfg = dit.export_config(cfg)
    sampler = sampler_contract(t2v, cfg)
    shapes = resolve_shapes(t2v, cfg, uses_cfg=sampler.uses_cfg)
    built = dit.build(t2v, shapes, cfg.components) if dit.is_dit(t2v) else build_components(t2v, shapes, cfg.components)
    components = {n: (with_tolerances(c, cfg), m) for n, (c, m) in built.items()}
    if schema.FULL_DECODER not in cfg.decoders:
        for name in schema.FULL_DECODER_COMPONENTS:
            components.pop(name, None)
    components |= decoder_variants(t2v, model_dir, shapes, cfg)

    with staged_dir(out, schema.MANIFEST, cfg.overwrite) as tmp:
        files: dict[str, dict[str, str]] = {}
        parity: dict[str, dict[str, ParityResult]] = {}
        for name, (contract, module) in components.items():
            files[name], parity[name] = export_component(name, contract, module, tmp, cfg)
        int8_feeds: dict[str, list[dict[str, np.ndarray]]] = {}
        formats = {n: {p: "onnx" for p in files[n]} for n in files}
        if "int8" in cfg.precisions and "unet" in components:
            cfg = resolve_int8_format(cfg, tmp / files["unet"]["fp32"])
            source = calibration or CALIBRATION_SOURCES.get(sampler.kind)
            if source is None:
                raise ValueError(f"no int8 calibration source for sampler kind {sampler.kind!r}; pass calibration=...")
            files["unet"]["int8"], parity["unet"]["int8"], int8_feeds["unet"] = export_int8_unet(
                t2v, components["unet"][0], components["unet"][1], tmp, cfg, shapes, source)
            formats["unet"]["int8"] = INT8_FILE_FORMAT[cfg.int8_format]
        variant_names = [schema.decoder_component(n) for n in cfg.decoders if n != schema.FULL_DECODER and schema.decoder_component(n) in components]
        rejected: dict[str, Any] = {}
        if "int8" in cfg.precisions and variant_names:
            latents = decoder_calibration(t2v, cfg, shapes, sampler)
            for name in variant_names:
                file, result, int8_feeds[name], backend = export_int8_decoder(name, *components[name], tmp, cfg, latents)
                if file is None:
                    rejected[name] = {**result.to_dict(), "backend": backend}
                else:
                    files[name]["int8"], parity[name]["int8"], formats[name]["int8"] = file, result, "onnx"
        gated_on = {n: {p: GATED_ON[formats[n][p]] for p in v} for n, v in parity.items()}
        report: dict[str, Any] = {
            "onnxruntime": {n: {p: r.to_dict() for p, r in v.items() if gated_on[n][p] == "onnxruntime"} for n, v in parity.items()},
            "openvino": openvino_report(tmp, components, files, formats, cfg, int8_feeds) if cfg.openvino_check else {},
            "threads": cfg.threads,
        }
        if rejected:  # decoder int8 graphs whose gate failed: measured, not shipped
            report["int8_rejected"] = rejected
        for n, v in parity.items():  # gates that ran on OpenVINO (an IR variant) report beside its other measurements
            for p, r in v.items():
                if gated_on[n][p] == "openvino":
                    report["openvino"].setdefault(n, {})[p] = r.to_dict()
        (tmp / "parity.json").write_text(json.dumps(report, indent=1) + "\n")
        cfg.save(tmp / "export_config.json")
        copy_tokenizer(model_dir, tmp)
        manifest = schema.new_manifest(
            __version__,
            source={"model": str(model), "kind": t2v.card.kind, "config_hash": config_hash,
                    "toolchain": toolchain()},
            sampler=sampler.to_dict(),
            **describe(t2v, shapes, components),
            components={n: {"files": files[n], "formats": formats[n], **c.to_manifest()} for n, (c, _m) in components.items()},
            parity={n: {p: {**{k: r.to_dict()[k] for k in ("max_abs", "mean_rel", "tolerance", "passed", "metric")}, "backend": gated_on[n][p]}
                        for p, r in v.items()} for n, v in parity.items()},
        )
        if (section := decoders_section(cfg, components, model_dir)) is not None:
            manifest["decoders"] = section
        if schema.DECODER_FIRST_STEP in components:  # a schema-1 reader would call the step graph as a whole clip
            manifest["schema_version"] = schema.STEPS_SCHEMA_VERSION
        schema.write_manifest(tmp, manifest)
        schema.verify_bundle(tmp)
    log.info("wrote bundle %s (config_hash %s)", out, config_hash)
    return out
