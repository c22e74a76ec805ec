"""The bundle format, read and written by one piece of code: ``turbo-edge export`` writes it, ``turbo-edge verify``,
the Python runtime and (mirrored key by key) ``runtime/cpp/src/bundle.cpp`` read it.

A bundle is a directory: ``manifest.json`` (schema, the sampler contract with its schedule numbers, shapes, and the
sha256 of every file) beside the ONNX graphs, tokenizer files and optional TensorRT engines. The trust boundary is
the manifest's ``files`` table: every path the runtime opens must be a hashed entry of it, inside the directory,
and match its hash. ``load_bundle`` enforces exactly that, for ``verify`` and the runtime alike.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from turbo_edge.spec.errors import UNVERIFIED, BundleError, UnverifiedBundleWarning
from turbo_edge.spec.paths import OutsideRoot, inside
from turbo_edge.spec.sampler import SamplerSpec

SCHEMA_VERSION = 1
# The schema a bundle needs its reader to know, the oldest that runs it: 1, or 2 for a bundle whose full decoder is
# the causal step graphs (layout "steps", export.dit ``decoder_step_components``), which a schema-1 reader would call
# as a whole-clip graph; so it refuses it by the version instead ("upgrade turbo-edge"). This build reads both.
STEPS_SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (SCHEMA_VERSION, STEPS_SCHEMA_VERSION)
MANIFEST = "manifest.json"
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
PRECISIONS = ("fp32", "fp16", "int8")
# A variant's file format, recorded per precision in a component's ``formats`` (absent: "onnx", as bundles made
# before the field). "openvino" is OpenVINO IR: the manifest names the .xml, its weights are the .bin beside it
# (both hashed); only the openvino backend reads it (export's int8_format=openvino, for UNets too large for Q/DQ).
FORMATS = ("onnx", "openvino")
IR_WEIGHTS_SUFFIX = ".bin"
REQUIRED_KEYS = ("schema_version", "sampler", "latent", "video", "text", "components", "files")
ENGINE_DIR = "engines"
# Decoder variants (``export --decoder full,tiny``): the manifest's ``decoders`` section names each decoder a bundle has,
# the component holding its graphs and its layout, and the default. "full" is the VAE's decoder, component
# ``vae_decoder``: the "frames" layout for a per-frame VAE (one call per frame: latent [N, C, h, w] -> image
# [N, 3, H, W]), the "video" layout for a causal video autoencoder's (export.dit: latent [B, C, f, h, w] -> video
# [B, 3, F, H, W] over the whole clip). A variant NAME is component ``vae_decoder_NAME`` with the "clip" layout (latent
# [B, C, f, h, w] -> image [B, F, 3, H, W]: a tiny decoder's memory blocks see the previous frame), F = f for a per-frame
# autoencoder and 1 + t (f - 1) for a causal one (the manifest's latent.temporal_factor, causal_first_frame): the full
# decoder's frame count, so a runtime swaps one for the other. A bundle without the section has the full decoder only.
# The "steps" layout (a bundle exported for a range of clip lengths): the causal decoder as two graphs with its cache
# explicit, component ``vae_decoder`` (latent frame k >= 1 [B, C, 1, h, w] and ``cache_i`` -> video [B, 3, t, H, W] and
# ``next_cache_i``) and ``DECODER_FIRST_STEP`` (latent frame 0 -> video [B, 3, 1, H, W] and ``next_cache_i``): the
# runtime calls the first, then the step once per later latent frame, feeding each call's next_cache_i back as cache_i.
FULL_DECODER = "full"
DECODER_LAYOUTS = ("frames", "clip", "video", "steps")
DECODER_FIRST_STEP = "vae_decoder_first"
# The components of the full decoder (its step graphs' first one included), each with the component whose settings it
# follows (fp16_components, --components name ``vae_decoder``).
FULL_DECODER_COMPONENTS = {"vae_decoder": "vae_decoder", DECODER_FIRST_STEP: "vae_decoder"}
DECODER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tmp_name() -> str:
    return f".{MANIFEST}.tmp"


def hash_files(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest itself, keyed by POSIX relative path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, _tmp_name())
    }


def member(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a manifest path that stays inside the bundle; ``BundleError`` for anything else.

    Refused (``spec.paths.inside``, the rule the data layer applies too): non-strings, absolute paths, ``..`` parts,
    and links whose target lies outside the bundle, so no manifest can make a reader open (or report the hash of) a
    file elsewhere on the machine.
    """
    try:
        return inside(root, rel)
    except OutsideRoot as exc:
        said = {"name": f"{what} path {rel!r} is not a relative file name; re-export the bundle",
                "outside": f"{what} path {rel!r} points outside the bundle; a bundle may only name its own files",
                "link": f"{what} {rel!r} is a link to a file outside the bundle; copy the file in and re-export",
                "loop": f"{what} {rel!r} is a symlink loop; copy the real file in and re-export"}[exc.reason]
        raise BundleError(f"{root / MANIFEST}: {said}") from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of bundle ``path`` as a dict, with its schema and required sections checked."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory; create one with `turbo-edge export --model MODEL --out {root}`")
    file = root / MANIFEST
    if not file.is_file():
        raise BundleError(f"{root} is not a bundle: no {MANIFEST} (not a turbo-edge bundle, or an export that never finished); create one with `turbo-edge export`")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file} is not valid JSON ({exc}); re-export the bundle") from exc
    except RecursionError:
        raise BundleError(f"{file} nests JSON too deeply to be a manifest; re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{file} is a JSON {type(manifest).__name__}, not an object; re-export the bundle")
    version = manifest.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in SCHEMA_VERSIONS:  # JSON true is a Python int equal to 1; the C++ host refuses it
        raise BundleError(f"{file}: schema_version {version!r} is not supported (this build reads {SCHEMA_VERSION} and {STEPS_SCHEMA_VERSION}); "
                          "re-export or upgrade turbo-edge")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if not isinstance(manifest.get("components", {}), dict) or not isinstance(manifest.get("files", {}), dict):
        raise BundleError(f"{file}: components and files must be JSON objects; re-export the bundle")
    if missing:
        raise BundleError(f"{file} lacks {missing}; re-export the bundle")
    return manifest


def referenced_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, path) for every file the manifest points a reader at: component graphs and TensorRT engines."""
    refs = []
    for name, entry in manifest["components"].items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or not files.get("fp32"):
            raise BundleError(f"{MANIFEST}: component {name} has no fp32 graph; re-export the bundle")
        refs += [(f"component {name} {precision}", rel) for precision, rel in files.items() if rel]
        refs += [(f"component {name} {precision} weights", ir_weights(rel)) for precision, rel in files.items()
                 if rel and variant_format(entry, precision) == "openvino"]
    for name, by_precision in (manifest.get("engines") or {}).items():
        refs += [(f"engine {name} {precision}", e.get("file")) for precision, e in by_precision.items()]
    return refs


def variant_format(entry: dict[str, Any], precision: str) -> str:
    """The file format of one variant of a component's manifest entry: "onnx" unless ``formats`` says otherwise."""
    fmt = (entry.get("formats") or {}).get(precision, "onnx")
    if fmt not in FORMATS:
        raise BundleError(f"{MANIFEST}: {precision} file format {fmt!r} is not one this build reads ({list(FORMATS)}); re-export or upgrade turbo-edge")
    return fmt


def ir_weights(xml: str) -> str:
    """The weights file OpenVINO reads beside an IR graph: ``unet.int8.xml`` -> ``unet.int8.bin``."""
    return str(PurePosixPath(xml).with_suffix(IR_WEIGHTS_SUFFIX))


def check_paths(root: Path, manifest: dict[str, Any]) -> None:
    """Every path the manifest names stays inside the bundle, and every file a reader opens is a hashed entry."""
    files = manifest["files"]
    for rel in files:
        member(root, rel, "file")
    for what, rel in referenced_files(manifest):
        member(root, rel, what)
        if rel not in files:
            raise BundleError(f"{root / MANIFEST}: {what} file {rel!r} is not in the hashed file list; re-export the bundle")


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed file present and unchanged since export; nothing unlisted beside them."""
    files = manifest["files"]
    if not files:
        raise BundleError(f"{root / MANIFEST} lists no files; re-export the bundle with `turbo-edge export`")
    for rel, expected in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            raise BundleError(f"bundle file {rel} is missing from {root}; re-export the bundle or copy it again whole")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle file {rel} in {root} was changed after export (its sha256 differs from the manifest's); "
                              f"re-export the bundle, or restore the original file")
    extra = sorted(set(hash_files(root)) - set(files))
    if extra:
        raise BundleError(f"bundle {root} holds files not in its manifest: {extra}; remove them or re-export the bundle")


@dataclass(frozen=True)
class Bundle:
    """A read bundle: its manifest and the typed sampler contract. Paths it hands out are checked members."""

    root: Path
    manifest: dict[str, Any]
    sampler: SamplerSpec
    verified: bool

    @property
    def latent(self) -> dict[str, Any]:
        return self.manifest["latent"]

    @property
    def video(self) -> dict[str, Any]:
        return self.manifest["video"]

    @property
    def lead_in_frames(self) -> int:
        """Frames each clip starts with before the prompt's content (the model card's, written at export; 0 before)."""
        return int(self.manifest["video"].get("lead_in_frames", 0))

    @property
    def text(self) -> dict[str, Any]:
        return self.manifest["text"]

    @property
    def closed_vocabulary(self) -> list[str] | None:
        return self.text.get("closed_vocabulary")

    def component(self, name: str) -> dict[str, Any]:
        return self.manifest["components"][name]

    def model_path(self, name: str, precision: str) -> Path:
        """The ONNX file of component ``name`` at ``precision``; components without that variant stay fp32."""
        files = self.component(name)["files"]
        if precision != "fp32" and not files.get(precision) and name == "unet":
            have = sorted(k for k, v in files.items() if v)
            raise BundleError(f"this bundle has no {precision} UNet (it has {have}); export it with `--precision {precision}` or pick one of those")
        return member(self.root, files.get(precision) or files["fp32"], f"component {name}")

    def model_format(self, name: str, precision: str) -> str:
        """The format of the file ``model_path(name, precision)`` returns ("onnx" or "openvino": ``FORMATS``)."""
        files = self.component(name)["files"]
        return variant_format(self.component(name), precision if files.get(precision) else "fp32")

    def require_format(self, name: str, precision: str, formats: tuple[str, ...], backend: str) -> None:
        """Refuse, in one line naming the fix, a variant whose file format ``backend`` cannot read."""
        fmt = self.model_format(name, precision)
        if fmt not in formats:
            raise BundleError(f"this bundle's {precision} {name} is OpenVINO IR ({self.component(name)['files'][precision]}), which the {backend} "
                              f"backend cannot run; use `--backend openvino`, or re-export with `--set int8_format=qdq`")

    def engine_path(self, name: str, precision: str) -> Path:
        """The TensorRT engine ``turbo-edge engine`` recorded for component ``name`` at ``precision``."""
        engines = self.manifest.get("engines") or {}
        entry = engines.get(name, {}).get(precision) or (engines.get(name, {}).get("fp32") if name != "unet" else None)
        if not entry:
            raise BundleError(f"no TensorRT engine for {name} ({precision}) in {self.root}; run `turbo-edge engine --bundle {self.root}` on this GPU")
        return member(self.root, entry["file"], f"engine {name}")

    def profile(self, name: str) -> dict[str, dict[str, list[int]]]:
        return self.component(name).get("profile") or {}

    def pixel_frames(self, latent_frames: int) -> int:
        """Video frames of ``latent_frames``, by the manifest's temporal geometry (a causal autoencoder: 1 + t (f - 1))."""
        t = int(self.latent.get("temporal_factor", 1))
        return 1 + t * (latent_frames - 1) if self.latent.get("causal_first_frame") else t * latent_frames

    def clip_lengths(self) -> tuple[int, int] | None:
        """(shortest, longest) clip of a DiT bundle exported for a range of lengths (``export --min-frames / --max-frames``:
        a causal autoencoder, the transformer's latent frames a range in its profile); None for every other bundle."""
        profile = self.profile("unet")
        if not self.latent.get("causal_first_frame") or "min" not in profile or "sample" not in profile["min"]:
            return None
        lo, hi = profile["min"]["sample"][2], profile["max"]["sample"][2]
        return None if lo == hi else (self.pixel_frames(lo), self.pixel_frames(hi))

    @property
    def decoders(self) -> tuple[list[str], str]:
        """The names of the decoders this bundle has (the default first) and the default's name."""
        variants, default = bundle_decoders(self.root, self.manifest)
        return [default, *sorted(set(variants) - {default})], default

    def decoder(self, name: str | None = None) -> tuple[str, str, str]:
        """(name, component, layout) of decoder ``name`` (None: the bundle's default), refused in one line naming the
        decoders the bundle has."""
        variants, default = bundle_decoders(self.root, self.manifest)
        name = default if name is None else name
        if name not in variants:
            have = self.decoders[0]
            raise BundleError(f"this bundle has no {name!r} decoder; it has {have} (export one with "
                              f"`turbo-edge export --decoder {','.join(have)},{name}` from a model directory that carries it)")
        return name, variants[name]["component"], variants[name]["layout"]


def decoder_component(name: str) -> str:
    """The component holding decoder ``name``'s graphs: ``vae_decoder`` for "full", else ``vae_decoder_NAME``."""
    return "vae_decoder" if name == FULL_DECODER else f"vae_decoder_{name}"


def full_decoder_layout(manifest: dict[str, Any]) -> str:
    """The full decoder's layout as its graph takes latents: "video" for a whole-clip graph (a 5-D ``latent``, a causal
    video autoencoder's, export.dit), else "frames" (one call per frame); bundles made before the ``decoders`` section."""
    component = manifest.get("components", {}).get("vae_decoder")
    inputs = component.get("inputs") if isinstance(component, dict) else None
    shape = inputs[0].get("shape") if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) else None
    if isinstance(shape, list) and len(shape) == 5:
        return "steps" if len(inputs) > 1 else "video"  # the step graph also takes its cache
    return "frames"


def check_steps(root: Path, manifest: dict[str, Any], name: str, layout: str) -> None:
    """A "steps" decoder is the full one, its first-step graph beside it, in a manifest of schema 2 or later."""
    if layout != "steps":
        return
    if name != FULL_DECODER or DECODER_FIRST_STEP not in manifest["components"] or manifest.get("schema_version") != STEPS_SCHEMA_VERSION:
        raise BundleError(f"{root / MANIFEST}: decoder {name!r} has the \"steps\" layout, which only the full decoder of a schema "
                          f"{STEPS_SCHEMA_VERSION} bundle with a {DECODER_FIRST_STEP} component has; re-export the bundle")


def bundle_decoders(root: Path, manifest: dict[str, Any]) -> tuple[dict[str, dict[str, str]], str]:
    """The manifest's ``decoders`` section checked: ({name: {"component", "layout", ...}}, default name). A manifest
    without it (bundles made before variants) has the full decoder only."""
    section = manifest.get("decoders")
    if section is None:
        layout = full_decoder_layout(manifest)
        check_steps(root, manifest, FULL_DECODER, layout)
        return {FULL_DECODER: {"component": "vae_decoder", "layout": layout}}, FULL_DECODER
    where = f"{root / MANIFEST}: decoders"
    variants = section.get("variants") if isinstance(section, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise BundleError(f"{where} must be an object with a non-empty variants object; re-export the bundle")
    for name, entry in variants.items():
        if not name or not set(name) <= DECODER_NAME_CHARS or not isinstance(entry, dict):
            raise BundleError(f"{where}: variant {name!r} must be a lower-case name (a-z, 0-9, _) with an object; re-export the bundle")
        if entry.get("component") != decoder_component(name) or entry.get("layout") not in DECODER_LAYOUTS:
            raise BundleError(f"{where}: variant {name!r} must name component {decoder_component(name)!r} and a layout in "
                              f"{list(DECODER_LAYOUTS)}; re-export the bundle")
        if entry["component"] not in manifest["components"]:
            raise BundleError(f"{where}: variant {name!r} names component {entry['component']!r}, which the bundle lacks; re-export the bundle")
        check_steps(root, manifest, name, entry["layout"])
    default = section.get("default")
    if default not in variants:
        raise BundleError(f"{where}.default {default!r} is not one of its variants {sorted(variants)}; re-export the bundle")
    return variants, default


# The numbers a runtime reads from the manifest's geometry sections (the C++ host reads the same).
GEOMETRY = {"latent": ("channels", "frames", "height", "width"), "video": ("frames", "height", "width"), "text": ("max_length", "hidden_size")}


def check_geometry(root: Path, manifest: dict[str, Any]) -> None:
    """Each geometry section is an object of positive integers, and a closed vocabulary is a list of words."""
    for section, keys in GEOMETRY.items():
        value = manifest[section]
        if not isinstance(value, dict):
            raise BundleError(f"{root / MANIFEST}: {section} must be a JSON object, got {type(value).__name__}; re-export the bundle")
        for key in keys:
            n = value.get(key)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise BundleError(f"{root / MANIFEST}: {section}.{key} must be a positive integer, got {n!r}; re-export the bundle")
    lead_in = manifest["video"].get("lead_in_frames", 0)  # frames before the prompt's content (a DiT's causal first frame)
    if isinstance(lead_in, bool) or not isinstance(lead_in, int) or not 0 <= lead_in < manifest["video"]["frames"]:
        raise BundleError(f"{root / MANIFEST}: video.lead_in_frames must be an integer from 0 to video.frames - 1, got {lead_in!r}; "
                          "re-export the bundle")
    vocab = manifest["text"].get("closed_vocabulary")
    if vocab is not None and (not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab)):
        raise BundleError(f"{root / MANIFEST}: text.closed_vocabulary must be a list of words or null; re-export the bundle")


def load_bundle(path: str | Path, verify: bool = True, runnable: bool = True) -> Bundle:
    """Read ``manifest.json`` and (``verify``) check every file against it. One rule for verify and both runtimes.

    ``runnable``: the bundle must hold every component the runtime calls (an export of ``--components unet``
    verifies, but cannot be run).
    """
    root = Path(path).expanduser()
    manifest = read_manifest(root)
    decoders, default = bundle_decoders(root, manifest)
    needed = ("text_encoder", "unet", decoders[default]["component"])  # a "steps" decoder's first graph: check_steps
    lacking = [c for c in needed if c not in manifest["components"]]
    if runnable and lacking:
        raise BundleError(f"bundle {root} has no {lacking} graph(s) the runtime needs; export them (`--components` default: all)")
    check_paths(root, manifest)  # the boundary holds with --no-verify too: only the hashing is skipped
    if verify:
        verify_files(root, manifest)
    elif runnable:
        warnings.warn(UNVERIFIED, UnverifiedBundleWarning, stacklevel=2)
    sampler = SamplerSpec.from_dict(manifest["sampler"])
    if runnable:
        check_geometry(root, manifest)
    if runnable and sampler.flow_shift is None and sampler.alphas_cumprod is None:
        raise BundleError(f"{root / MANIFEST}: the sampler contract carries no noise schedule (alphas_cumprod); re-export the bundle")
    return Bundle(root=root, manifest=manifest, sampler=sampler, verified=verify)


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check the manifest's schema and every file's sha256; return the manifest. Raises ``BundleError``."""
    return load_bundle(path, verify=True, runnable=False).manifest


def new_manifest(turbo_edge_version: str, **sections: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"schema_version": SCHEMA_VERSION, "turbo_edge_version": turbo_edge_version, "created": now, **sections}


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file now in ``root`` into the manifest and write it (last, so it describes what is there)."""
    manifest = {**manifest, "files": hash_files(root)}
    tmp = root / _tmp_name()
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, root / MANIFEST)  # a reader sees the old manifest or the new one, never half of one
    return manifest


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a bundle directory (has a manifest); says nothing of whether it verifies."""
    return (Path(path).expanduser() / MANIFEST).is_file()
