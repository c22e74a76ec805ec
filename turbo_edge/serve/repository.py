"""A Triton model repository for one bundle: ``NAME/config.pbtxt`` from the manifest, ``NAME/1/model.py``.

The model's request contract (``INPUTS`` / ``OUTPUT``) is one table here; ``config_pbtxt`` writes it in Triton's
protobuf text format and ``turbo_edge.serve.handler`` reads requests by the same names. With ``max_batch_size``
> 0 Triton prepends the batch axis, so a request of B rows sends ``prompt`` as [B, 1] and gets ``frames`` as
[B, F, H, W, 3]. A bundle for a range of clip lengths (``Bundle.clip_lengths``) adds the optional ``num_frames``
input (``RANGE_INPUTS``) and its output's F is -1: each request gets the length it asked for. Torch-free: imports the
bundle schema only.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from turbo_edge.spec.bundle import Bundle, load_bundle
from turbo_edge.spec.configs import ServeConfig
from turbo_edge.spec.outputs import check_writable, foreign_files, owned_files, write_record

MODEL_FILE = Path(__file__).with_name("triton_model.py")  # copied verbatim to NAME/1/model.py
VERSION = "1"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's TYPE_* name
    optional: bool
    help: str


INPUTS = (
    TensorSpec("prompt", "TYPE_STRING", False, "UTF-8 text, e.g. 'a red circle moving left'"),
    TensorSpec("seed", "TYPE_INT64", True, "noise seed in [0, 2**63); default 0"),
    TensorSpec("steps", "TYPE_INT32", True, "sampler steps, one of the bundle's supported_steps; default its default_steps"),
    TensorSpec("guidance", "TYPE_FP32", True, "classifier-free guidance in [0, 100]; default the bundle's"),
)
# Only for a bundle with a range of clip lengths. Not named "frames": that is the output's name.
RANGE_INPUTS = (
    TensorSpec("num_frames", "TYPE_INT32", True, "clip length, 1 + 4k within the bundle's range; default (or 0) the bundle's"),
)
OUTPUT = TensorSpec("frames", "TYPE_UINT8", False, "uint8 RGB frames [F, H, W, 3] per row")


def model_inputs(bundle: Bundle) -> tuple[TensorSpec, ...]:
    """The request inputs the bundle's model declares: ``INPUTS``, and ``RANGE_INPUTS`` for a range of clip lengths."""
    return INPUTS + (RANGE_INPUTS if bundle.clip_lengths() else ())


def frame_dims(bundle: Bundle) -> tuple[int, int, int, int]:
    """The ``frames`` output's dims per row: the bundle's video size, [F, H, W, 3]; F is -1 (each request's own)
    for a bundle with a range of clip lengths."""
    video = bundle.video
    return (-1 if bundle.clip_lengths() else int(video["frames"])), int(video["height"]), int(video["width"]), 3


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    if any(c in text for c in "\n\r\x00"):
        raise ValueError(f"{text!r} holds a newline or NUL and cannot go into config.pbtxt; rename the path")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_parameters(cfg: ServeConfig, bundle: Bundle) -> dict[str, str]:
    """What each instance opens and how; the sampler defaults ride along for clients reading the model config."""
    spec = bundle.sampler
    lengths = bundle.clip_lengths()
    return {
        "bundle": str(bundle.root.resolve()),
        "backend": cfg.backend,
        "precision": cfg.precision,
        "threads": str(cfg.threads),
        "verify": "true" if cfg.verify else "false",
        "decoder": bundle.decoder(cfg.decoder)[0],
        "default_steps": str(spec.default_steps),
        "supported_steps": ",".join(str(s) for s in spec.supported_steps),
        "default_guidance": repr(float(spec.guidance)),
        **({"default_frames": str(bundle.video["frames"]), "clip_lengths": f"{lengths[0]}-{lengths[1]}"} if lengths else {}),
    }


def config_pbtxt(cfg: ServeConfig, bundle: Bundle) -> str:
    """The model's ``config.pbtxt``: Python backend, the request contract, batching, instances, parameters."""
    def tensor(t: TensorSpec, dims: tuple[int, ...]) -> str:
        lines = [f"    name: {_quoted(t.name)}", f"    data_type: {t.data_type}", f"    dims: [ {', '.join(map(str, dims))} ]"]
        if t.optional:
            lines.append("    optional: true")
        return "  {\n" + "\n".join(lines) + "\n  }"

    params = "\n".join(f"parameters: {{\n  key: {_quoted(k)}\n  value: {{ string_value: {_quoted(v)} }}\n}}"
                       for k, v in model_parameters(cfg, bundle).items())
    return "\n".join([
        f"# Written by `turbo-edge serve` from {bundle.root.resolve() / 'manifest.json'}.",
        "# Each row of a request is one clip: Pipeline.generate(prompt, steps, seed, guidance"
        f"{', frames=num_frames' if bundle.clip_lengths() else ''}) of the torch-free runtime.",
        f"name: {_quoted(cfg.model_name)}",
        'backend: "python"',
        f"max_batch_size: {cfg.max_batch}",
        "input [\n" + ",\n".join(tensor(t, (1,)) for t in model_inputs(bundle)) + "\n]",
        "output [\n" + tensor(OUTPUT, frame_dims(bundle)) + "\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {cfg.batch_delay_us}\n}}",
        f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: KIND_CPU\n  }}\n]",
        params,
        "",
    ])


def check_model_dir(target: Path) -> None:
    """Refuse to replace ``REPOSITORY/NAME`` unless it is absent, empty, or a model turbo-edge wrote whose every file
    is on its record: a model (or any file) the user put there is never deleted."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise FileExistsError(f"--repository: {target} is a file or link, not a model turbo-edge wrote; choose another --model-name")
    if not any(target.iterdir()):
        return
    owned = owned_files(target, "config.pbtxt")
    if owned is None:
        raise FileExistsError(f"--repository: {target} holds a model turbo-edge did not write (no record of its files); choose "
                              "another --model-name or --repository, or remove it yourself")
    foreign = foreign_files(target, owned)
    if foreign:
        raise FileExistsError(f"--repository: {target} holds files turbo-edge did not write ({', '.join(foreign)}); move them out, "
                              "or choose another --model-name: turbo-edge replaces only its own files")


def write_repository(cfg: ServeConfig) -> Path:
    """Write ``cfg.repository/NAME`` (config.pbtxt, 1/model.py) for ``cfg.bundle``; returns the model directory.

    The bundle is read (and with ``cfg.verify`` hashed) first, so a bad bundle fails here with its own message
    rather than inside the server. ``NAME/`` is replaced whole, and only when turbo-edge wrote every file in it
    (``spec.outputs.RECORD``: a run id and the files); other models in the repository are left alone.
    """
    bundle = load_bundle(cfg.bundle, verify=cfg.verify)
    if cfg.decoder is not None:  # a decoder the bundle lacks: one line naming those it has, before anything is written
        bundle.decoder(cfg.decoder)
    repository = Path(cfg.repository).expanduser()
    target = repository / cfg.model_name
    check_model_dir(target)
    check_writable(repository, "--repository")
    repository.mkdir(parents=True, exist_ok=True)
    # Staged beside the repository, not in it: a server never sees a half-written model directory.
    staging = repository.parent / f".{repository.name}.{cfg.model_name}.{uuid.uuid4().hex[:8]}.tmp"
    (staging / VERSION).mkdir(parents=True)
    (staging / "config.pbtxt").write_text(config_pbtxt(cfg, bundle), encoding="utf-8")
    shutil.copyfile(MODEL_FILE, staging / VERSION / "model.py")
    write_record(staging, "Triton model (turbo-edge serve)")
    if target.exists():
        old = repository.parent / f".{repository.name}.{cfg.model_name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old)
    else:
        os.replace(staging, target)
    return target
