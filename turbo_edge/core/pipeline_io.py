"""Load and save text-to-video models in diffusers' ``TextToVideoSDPipeline`` directory layout.

``load_teacher`` accepts the builtin aliases or any local directory in that layout (ModelScope T2V and
zeroscope use it). It checks the layout itself and fails with a message naming the problem, before any
library gets a chance to fail deep inside. Weights load from safetensors only. The tokenizer folder holds
``tokenizer.json`` (what transformers 5 writes, and ``save_model`` with it) or ``vocab.json`` + ``merges.txt``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turbo_edge.core.denoiser import DenoiserFamily
from turbo_edge.core.families import MODEL_FAMILIES, ModelFamily, all_pipeline_classes, family_of_pipeline
from turbo_edge.spec.card import ModelCard, read_card, write_card
from turbo_edge.spec.errors import ModelLayoutError
from turbo_edge.spec.outputs import staged_dir
from turbo_edge.spec.tokenizer import bpe_files

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ALIASES: dict[str, Path] = {
    "builtin": ASSETS / "teacher",
    "builtin-student": ASSETS / "student",
    "builtin-pruned": ASSETS / "pruned",
    # The DiT family's builtin models (Wan2.1's architecture at the world's size): built by the commands in README.md
    # ("The builtin DiT models"); until then the alias names what is missing and how to build it.
    "builtin-dit": ASSETS / "dit",
    "builtin-dit-student": ASSETS / "dit_student",
    "builtin-dit-pruned": ASSETS / "dit_pruned",
}
PIPELINE_CLASSES = all_pipeline_classes()
MODEL_INDEX = "model_index.json"  # marks a model directory (staged_dir replaces only those)
# The folder a loaded autoencoder / text encoder / tokenizer came from, set on it by ``load_teacher``: ``save_model``
# copies that folder's files instead of saving it again while its weights (vocabulary) are still exactly those files'.
SOURCE_ATTR = "_turbo_edge_source"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class T2VModel:
    """The five components of a text-to-video diffusion model, plus its model card (``ModelCard.absent()`` if none) and
    its family (``core.families``: which plug point serves each component). ``denoiser`` is the denoiser of any family
    (a UNet3D or a video DiT); ``unet`` is kept as an alias for code written before there were two families."""

    denoiser: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    path: Path | None = None
    card: ModelCard = field(default_factory=ModelCard.absent)
    components: ModelFamily = field(default_factory=lambda: MODEL_FAMILIES["unet3d"])

    @property
    def unet(self) -> Any:
        """The denoiser (an alias from the UNet-only days; new code says ``denoiser``)."""
        return self.denoiser

    @unet.setter
    def unet(self, module: Any) -> None:
        self.denoiser = module

    @property
    def family(self) -> DenoiserFamily:
        """The denoiser's plug point (``core.denoiser``)."""
        return self.components.denoiser

    def denoise(self, sample: Any, timestep: Any, text: Any, guidance: Any = None) -> Any:
        """One denoiser call in the family-independent signature (``core.denoiser``)."""
        return self.family.forward(self.denoiser, sample, timestep, text, guidance)

    def encode_prompts(self, prompts: list[str]) -> Any:
        """Prompts -> the denoiser's condition [B, L, D] (the text-encoder plug point; "" is the unconditional prompt)."""
        return self.components.text.encode(self.text_encoder, self.tokenizer, prompts)

    def decode_latents(self, latents: Any) -> Any:
        """Normalised latents [B, C, f, h, w] -> uint8 frames [B, F, H, W, 3] (the autoencoder plug point)."""
        return self.components.autoencoder.decode(self.vae, latents)

    @property
    def lead_in_frames(self) -> int:
        return int(self.card.lead_in_frames)

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.scheduler.config)

    @property
    def schedule(self) -> Any:
        """The noise schedule (``spec.param.NoiseSchedule``) the scheduler config defines for this family's parameterisation."""
        from turbo_edge.spec.param import NoiseSchedule

        return NoiseSchedule.from_scheduler_config(self.scheduler_config, self.components.parameterisation)

    @property
    def closed_vocabulary(self) -> list[str] | None:
        """Words the model was trained on, for models that know only those (the builtin ones)."""
        return self.card.closed_vocabulary

    def eval(self) -> T2VModel:
        for part in (self.denoiser, self.vae, self.text_encoder):
            part.eval().requires_grad_(False)
        return self


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    name = str(name_or_path)
    if name in ALIASES:
        path = ALIASES[name]
        if not (path / "model_index.json").is_file():
            raise ModelLayoutError(
                f"the alias {name!r} points to {path}, which has not been built in this checkout; "
                f"its issue's reproduce command in README.md builds it"
            )
        return path
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelLayoutError(
            f"model path {name!r} does not exist; pass a local diffusers text-to-video directory "
            f"or one of the aliases {sorted(ALIASES)}"
        )
    return path


def check_layout(path: Path) -> dict[str, Any]:
    """Validate the directory layout against its family's components; return model_index.json's content."""
    if not path.is_dir():
        raise ModelLayoutError(f"{path} is a file; a model is a directory with model_index.json and component folders")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLayoutError(f"{path} has no model_index.json: it is not a diffusers pipeline directory")
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLayoutError(f"{index_file} is not valid JSON ({exc})") from exc
    if not isinstance(index, dict):
        raise ModelLayoutError(f"{index_file} is not a JSON object")
    cls = index.get("_class_name")
    family = family_of_pipeline(cls)
    if family is None:
        raise ModelLayoutError(f"{path} holds a {cls!r}, not a text-to-video pipeline (expected one of {PIPELINE_CLASSES})")
    folders = component_folders(family)
    missing = [c for c in folders if not (path / c).is_dir()]
    if missing:
        raise ModelLayoutError(f"{path} lacks component folder(s) {missing}; a {cls} needs {list(folders)}")
    named = {
        family.denoiser.folder: (family.denoiser.diffusers_class,),
        "vae": (family.autoencoder.diffusers_class,),
        "text_encoder": (family.text.transformers_class,),
        "scheduler": family.schedulers,
    }
    for comp, allowed in named.items():
        if not allowed:
            continue
        entry = index.get(comp)
        got = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
        if got not in allowed:
            raise ModelLayoutError(f"{path}'s {comp} is a {got!r}; a {cls} in turbo-edge takes {' or '.join(allowed)} "
                                   f"(denoiser families: {sorted(f.denoiser.diffusers_class for f in MODEL_FAMILIES.values())})")
    for comp in (family.denoiser.folder, "vae", "text_encoder"):
        files = list((path / comp).iterdir())
        if not any(f.suffix == ".safetensors" for f in files):
            pickles = [f.name for f in files if f.suffix in PICKLE_SUFFIXES]
            if pickles:
                raise ModelLayoutError(
                    f"{path / comp} has only pickle weights {pickles}; turbo-edge loads safetensors only. Convert them "
                    f"once in a trusted environment (load, then save_pretrained(..., safe_serialization=True))"
                )
            raise ModelLayoutError(f"{path / comp} has no .safetensors weights")
    try:
        if family.name == "unet3d":
            bpe_files(path / "tokenizer")
        elif not (path / "tokenizer" / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{path / 'tokenizer'} has no tokenizer.json (a T5 / UMT5 tokenizer as transformers writes it)")
    except FileNotFoundError as exc:
        raise ModelLayoutError(str(exc)) from None
    return index


def component_folders(family: ModelFamily) -> tuple[str, ...]:
    return (family.denoiser.folder, "vae", "text_encoder", "tokenizer", "scheduler")


def model_family(path: str | os.PathLike[str]) -> ModelFamily:
    """The family of a model directory (or alias), from its model_index.json, after the layout check."""
    index = check_layout(resolve_model_path(path))
    family = family_of_pipeline(index["_class_name"])
    assert family is not None  # check_layout refused anything else
    return family


def _load_denoiser(path: Path, family: ModelFamily, dtype: Any) -> tuple[Any, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """``path``'s denoiser, rebuilt from the plans its directory records (a pruned student's), and those plans."""
    from turbo_edge.spec.plan import read_plans

    plans = read_plans(path)
    return family.denoiser.load(path / family.denoiser.folder, dtype, *plans), plans


def load_denoiser(name_or_path: str | os.PathLike[str], torch_dtype: Any = None) -> tuple[Any, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """A model directory's denoiser alone and the plans it was rebuilt from (block, channel): a stage that needs only
    another model's UNet / transformer does not load that model's autoencoder and text encoder too."""
    import torch

    path = resolve_model_path(name_or_path)
    family = model_family(path)
    try:
        denoiser, plans = _load_denoiser(path, family, torch_dtype or torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLayoutError(f"could not load the weights in {path}: {exc}") from exc
    return denoiser.eval(), plans


def load_teacher(name_or_path: str | os.PathLike[str], torch_dtype: Any = None) -> T2VModel:
    """Load a text-to-video model from a builtin alias or a local diffusers directory (safetensors only)."""
    import diffusers

    path = resolve_model_path(name_or_path)
    index = check_layout(path)
    family = family_of_pipeline(index["_class_name"])
    assert family is not None
    import torch

    # Explicit dtype: transformers 5 would otherwise keep the checkpoint's (float16 for the shipped weights).
    dtype = torch_dtype if torch_dtype is not None else torch.float32
    from turbo_edge.core.memory import check_fits

    check_fits(path, torch.empty((), dtype=dtype).element_size())  # before from_pretrained allocates what the configs name
    try:
        denoiser, _ = _load_denoiser(path, family, dtype)  # a pruned student is rebuilt from its plan(s)
        vae = family.autoencoder.load(path / "vae", dtype)
        text_encoder = family.text.load(path / "text_encoder", dtype)
        tokenizer = family.text.load_tokenizer(path / "tokenizer")
        for module, folder in ((vae, "vae"), (text_encoder, "text_encoder"), (tokenizer, "tokenizer")):
            object.__setattr__(module, SOURCE_ATTR, path / folder)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLayoutError(f"could not load the weights in {path}: {exc}") from exc
    scheduler = getattr(diffusers, index["scheduler"][1] if family.name != "unet3d" else "DDIMScheduler").from_pretrained(path / "scheduler")
    return T2VModel(denoiser, vae, text_encoder, tokenizer, scheduler, path=path, card=read_card(path), components=family).eval()


def save_model(model: T2VModel, out: str | os.PathLike[str], card: ModelCard | None = None, overwrite: bool = False,
               in_run_dir: bool = False) -> Path:
    """Write the diffusers layout atomically: a temp dir beside ``out``, renamed into place when complete.

    The model card written is ``card``, else the model's own; a model without one (a third-party checkpoint)
    is written without a card. An existing model directory at ``out`` is replaced only with ``overwrite``, and only
    when turbo-edge recorded writing every file in it (``in_run_dir``: inside a stage's own run directory, where an
    earlier build's model without a record is the run's own; ``spec.outputs.check_replaceable``).
    """
    out = Path(out)
    family = model.components
    with staged_dir(out, MODEL_INDEX, overwrite, in_run_dir=in_run_dir) as tmp:
        model.denoiser.save_pretrained(tmp / family.denoiser.folder, safe_serialization=True)
        for module, folder in ((model.vae, "vae"), (model.text_encoder, "text_encoder")):
            if not copy_unchanged(module, tmp / folder):
                module.save_pretrained(tmp / folder, safe_serialization=True)
        if not copy_tokenizer(model.tokenizer, tmp / "tokenizer"):
            model.tokenizer.save_pretrained(tmp / "tokenizer")  # transformers 5: tokenizer.json, which every reader takes
        model.scheduler.save_pretrained(tmp / "scheduler")
        index = {
            "_class_name": family.pipeline_classes[0],
            "_diffusers_version": _diffusers_version(),
            "scheduler": ["diffusers", type(model.scheduler).__name__],
            "text_encoder": ["transformers", family.text.transformers_class],
            "tokenizer": ["transformers", family.tokenizer_class],
            family.denoiser.folder: ["diffusers", family.denoiser.diffusers_class],
            "vae": ["diffusers", family.autoencoder.diffusers_class],
        }
        index = dict(sorted(index.items(), key=lambda kv: (not kv[0].startswith("_"), kv[0])))
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        card = card or model.card
        if card.decoders:  # decoder variants decode this VAE's latents, which the stages above never change: carried along
            card = carry_decoders(card, model.path, tmp)
        if card.present:
            write_card(card, tmp)
    return out


def _same_weights(module: Any, files: list[Path]) -> bool:
    """Whether ``module``'s state is exactly the tensors in ``files`` (compared in the wider of the two dtypes, so a
    float16 file read as float32 matches; one tensor at a time). A state entry the files lack must share storage with
    one they hold (a tied embedding, which the writer saved once)."""
    import torch
    from safetensors import safe_open

    state = module.state_dict()
    seen: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118  safe_open is no mapping
                have = state.get(key)
                if have is None:
                    return False
                saved = fh.get_tensor(key)
                if saved.shape != have.shape or saved.is_floating_point() != have.is_floating_point():
                    return False
                wide = torch.promote_types(saved.dtype, have.dtype)
                if not torch.equal(saved.to(wide), have.to(wide)):
                    return False
                seen.add(key)
    stored = {state[k].untyped_storage().data_ptr() for k in seen}
    return all(k in seen or v.untyped_storage().data_ptr() in stored for k, v in state.items())


def _source_files(obj: Any, suffixes: tuple[str, ...]) -> list[Path]:
    """The files with ``suffixes`` of the folder ``obj`` was loaded from (``SOURCE_ATTR``); [] when it has none, or
    when the folder holds a symlink (copy only what is provably inside the model directory)."""
    src = getattr(obj, SOURCE_ATTR, None)
    if src is None or not Path(src).is_dir():
        return []
    entries = list(Path(src).iterdir())
    if any(f.is_symlink() for f in entries):
        return []
    return sorted(f for f in entries if f.is_file() and f.suffix in suffixes)


def _copy_files(files: list[Path], dst: Path) -> bool:
    dst.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, dst / f.name)
    return True


def copy_unchanged(module: Any, dst: Path) -> bool:
    """Copy the folder ``module`` was loaded from (its configs and safetensors, nothing else) to ``dst`` when its
    weights are still exactly that folder's; False (nothing written) otherwise. A student or pruned model so keeps its
    teacher's autoencoder and text encoder byte for byte: the same storage dtype, and the same DATA fingerprint
    (``core.prepared.model_fingerprint``), where saving the float32 modules again would give neither."""
    files = _source_files(module, (".json", ".safetensors"))
    weights = [f for f in files if f.suffix == ".safetensors"]
    return bool(weights) and _same_weights(module, weights) and _copy_files(files, dst)


def copy_tokenizer(tokenizer: Any, dst: Path) -> bool:
    """Copy the tokenizer folder ``tokenizer`` was loaded from (its .json / .txt / .model files) to ``dst`` while its
    vocabulary equals that folder's; False (nothing written) otherwise. No stage trains a tokenizer, but saving one
    again writes its last call's state (max_length, padding and truncation sides, ...) into tokenizer_config.json,
    which changes the model's DATA fingerprint."""
    files = _source_files(tokenizer, (".json", ".txt", ".model"))
    if not files:
        return False
    try:
        fresh = type(tokenizer).from_pretrained(str(files[0].parent))
    except (OSError, ValueError):
        return False
    return fresh.get_vocab() == tokenizer.get_vocab() and _copy_files(files, dst)


def carry_decoders(card: ModelCard, src: Path | None, tmp: Path) -> ModelCard:
    """The card's decoder variants copied from ``src`` into ``tmp`` (each its folder); a variant whose folder ``src``
    lacks is dropped from the card, so a written card never names a decoder its directory does not hold."""
    import dataclasses

    kept = {}
    for name, variant in card.decoders.items():
        folder = Path(src) / variant.folder if src is not None else None
        if folder is not None and folder.is_dir() and not (tmp / variant.folder).exists():
            shutil.copytree(folder, tmp / variant.folder)
            kept[name] = variant
        else:
            log.warning("not carrying decoder %r: %s has no %s/", name, src, variant.folder)
    return dataclasses.replace(card, decoders=kept)


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


WEIGHT_DTYPES = ("float16", "bfloat16", "float32")


def check_same_autoencoder(a: Path, b: Path, what: str) -> None:
    """Refuse, in one line naming ``what``, unless model directories ``a`` and ``b`` hold the same autoencoder: the
    same class and config and the same weights to float16 rounding (a shipped model stores them in float16). A decoder
    variant decodes only the latent space it was trained on."""
    import torch

    configs = [json.loads((Path(d) / "vae" / "config.json").read_text()) for d in (a, b)]
    strip = [{k: v for k, v in c.items() if not k.startswith("_")} for c in configs]
    if configs[0].get("_class_name") != configs[1].get("_class_name") or strip[0] != strip[1]:
        raise ValueError(f"{what}: {b} has another autoencoder ({configs[1].get('_class_name')}) than {a} "
                         f"({configs[0].get('_class_name')}): a decoder variant decodes only the latent space it was trained on")
    ours, theirs = (model_family(d).autoencoder.load(Path(d) / "vae", torch.float32).state_dict() for d in (a, b))
    for name, value in ours.items():
        other = theirs.get(name)
        if other is None or other.shape != value.shape or not torch.allclose(other.float(), value.float(), rtol=1e-2, atol=1e-3):
            raise ValueError(f"{what}: {b}'s autoencoder differs from {a}'s ({name}): a decoder variant decodes only the latent "
                             "space it was trained on")


def convert_weights(name_or_path: str | os.PathLike[str], out: str | os.PathLike[str], dtype: str = "float16", overwrite: bool = False,
                    decoders_from: str | os.PathLike[str] | None = None, replace_decoders: bool = False,
                    only_decoders: tuple[str, ...] = ()) -> Path:
    """Copy a model directory with every floating-point safetensors tensor stored as ``dtype``.

    ``decoders_from``: another model directory whose decoder variants (``decoder train``'s ``tiny_vae/`` ...) the copy
    gains, folder and card entry with its lineage, refused unless both hold the same autoencoder (a student's tiny
    decoder fits the pruned model made from it: pruning never touches the VAE). A variant the model already has is
    refused unless ``replace_decoders``: then the donor's replaces it, folder and card entry (the old folder is not
    copied). ``only_decoders``: the donor's variants to take (default: all), each refused unless the donor has it.

    float16 halves the bytes of a shipped model; ``load_teacher`` reads the weights back as float32 by default, so
    everything downstream runs on the rounded weights. Files other than weights (configs, tokenizer, pruning plans,
    turbo_edge.json) are copied as they are; turbo_edge.json records ``weights_dtype`` and appends this conversion
    to its ``reproduce`` line. Written atomically.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; choose one of {WEIGHT_DTYPES}")
    src = resolve_model_path(name_or_path)
    check_layout(src)
    out = Path(out)
    if out.resolve() == src.resolve():
        raise ValueError(f"--out {out} is the model itself: write the converted copy to a new directory")
    target = getattr(torch, dtype)
    donor, added, dropped = None, {}, set()
    if (replace_decoders or only_decoders) and decoders_from is None:
        raise ValueError("--replace-decoders / --only-decoders choose among the decoder variants of --decoders-from DIR: give it too")
    if decoders_from is not None:
        donor = resolve_model_path(decoders_from)
        check_layout(donor)
        added = read_card(donor).decoders
        if not added:
            raise ValueError(f"--decoders-from {decoders_from} has no decoder variants (make one with `turbo-edge decoder train`)")
        missing = sorted(set(only_decoders) - set(added))
        if missing:
            raise ValueError(f"--only-decoders: {decoders_from} has no decoder(s) {missing}; it has {sorted(added)}")
        if only_decoders:
            added = {name: v for name, v in added.items() if name in only_decoders}
        own = read_card(src).decoders
        clash = sorted(set(added) & set(own))
        if clash and not replace_decoders:
            raise ValueError(f"--decoders-from: {src} already has decoder(s) {clash}; add --replace-decoders to replace them with {decoders_from}'s")
        dropped = {own[name].folder for name in clash}
        kept = {own[name].folder: name for name in own if name not in clash}
        taken = sorted(v.folder for v in added.values() if v.folder in kept)
        if taken:  # the donor's folder would overwrite a variant the copy keeps under another name
            raise ValueError(f"--decoders-from: {decoders_from}'s decoder folder(s) {taken} hold {src}'s other decoder(s) "
                             f"{sorted(kept[f] for f in taken)}; rename one of them")
        check_same_autoencoder(src, donor, f"--decoders-from {decoders_from}")
    with staged_dir(out, MODEL_INDEX, overwrite) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if Path(d) == src and n in dropped])
        if donor is not None:
            for variant in added.values():
                shutil.copytree(donor / variant.folder, tmp / variant.folder)
        for file in sorted(tmp.rglob("*.safetensors")):
            with safe_open(str(file), framework="pt") as fh:
                header = fh.metadata()
            tensors = load_file(str(file))
            save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}, str(file), metadata=header)
        card = read_card(tmp)
        if donor is not None:
            import dataclasses

            card = dataclasses.replace(card if card.present else ModelCard(), decoders={**card.decoders, **added})
        if card.present or donor is not None:
            card.weights_dtype = dtype
            step = (f"turbo-edge convert --model {src} --out {out} --dtype {dtype}" + (f" --decoders-from {donor}" if donor else "")
                    + (f" --only-decoders {','.join(only_decoders)}" if only_decoders else "") + (" --replace-decoders" if replace_decoders else ""))
            if card.reproduce and step not in card.reproduce:  # the line that made it, then this copy
                card.reproduce = f"{card.reproduce} && {step}"
            write_card(card, tmp)
    return out
