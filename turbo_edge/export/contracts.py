"""I/O contracts of the exportable components: names, dtypes, axes, min/opt/max shapes, sample inputs, tolerance.

Each component registers a builder into ``COMPONENTS``; a builder reads a loaded model plus the export shapes
and returns the component's ``Contract`` and the ``torch.nn.Module`` wrapper whose forward has exactly the
contract's inputs and outputs (as TensorRT demoDiffusion's ``BaseModel.get_input_profile`` declares them).
The runtime codes against these names: keep them stable.

Shapes are written with named axes (``"batch"``, ``"frames"``...); an axis is dynamic when it has a range
in ``Contract.axes``. The profile (min/opt/max) feeds both the parity check and TensorRT's optimisation profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Tolerances on the PyTorch reference. fp32/fp16 gate on the largest absolute difference; int8 on the mean
# relative error (``mean|a-b| / mean|b|``): Q/DQ errors are spread over every element, and a max-abs gate
# would be set by one outlier.
DEFAULT_TOLERANCE = {"fp32": ("max_abs", 1e-3), "fp16": ("max_abs", 5e-2), "int8": ("mean_rel", 0.25)}


class ContractError(ValueError):
    """Inputs whose names, dtypes or shapes lie outside a component's contract."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32" | "int64"
    shape: tuple[int | str, ...]  # ints are static, strings name an axis of ``Contract.axes``

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Contract:
    """What one exported graph promises: I/O, the range of every dynamic axis, and its parity tolerances."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    axes: dict[str, tuple[int, int, int]]  # axis name -> (min, opt, max); static axes are plain ints in shapes
    tolerance: dict[str, tuple[str, float]] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    seed: int = 0
    vocab_size: int = 2  # upper bound of sample ``input_ids``
    # The profile point the exporter traces at (the parity gate checks every point either way): a graph whose tracing
    # memory matters traces at "min" (export.dit: the transformer).
    trace_point: str = "opt"

    def is_dynamic(self, dim: int | str) -> bool:
        return isinstance(dim, str) and self.axes[dim][0] != self.axes[dim][2]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The ``torch.onnx.export`` form: tensor name -> {dim index: axis name}; fixed-range axes stay static."""
        return {t.name: {i: d for i, d in enumerate(t.shape) if self.is_dynamic(d)} for t in (*self.inputs, *self.outputs)}

    def manifest_shape(self, spec: TensorSpec) -> list[int | str]:
        """Shape as the graph has it: axis names where dynamic, ints where fixed (a static export has no names)."""
        return [d if self.is_dynamic(d) else self.shape_at(spec, "opt")[i] for i, d in enumerate(spec.shape)]

    def shape_at(self, spec: TensorSpec, point: str) -> tuple[int, ...]:
        index = {"min": 0, "opt": 1, "max": 2}[point]
        return tuple(d if isinstance(d, int) else self.axes[d][index] for d in spec.shape)

    def profile(self) -> dict[str, dict[str, list[int]]]:
        return {p: {t.name: list(self.shape_at(t, p)) for t in self.inputs} for p in ("min", "opt", "max")}

    def sample_inputs(self, point: str = "opt") -> dict[str, np.ndarray]:
        """Seeded inputs at a profile point; ``input_ids`` draws from the whole vocabulary, floats from N(0, 1)."""
        rng = np.random.default_rng(self.seed)
        feeds: dict[str, np.ndarray] = {}
        for t in self.inputs:
            shape = self.shape_at(t, point)
            if t.dtype == "int64":
                feeds[t.name] = rng.integers(0, self.vocab_size, size=shape, dtype=np.int64)
            elif t.name == "timestep":
                feeds[t.name] = rng.uniform(0, 999, size=shape).round().astype(np.float32)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
        return feeds

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise ``ContractError`` naming the input and axis when ``feeds`` do not fit the contract."""
        expected = {t.name for t in self.inputs}
        if set(feeds) != expected:
            raise ContractError(f"{self.name}: inputs {sorted(feeds)} do not match the contract's {sorted(expected)}")
        bound: dict[str, int] = {}
        for t in self.inputs:
            arr = feeds[t.name]
            if str(arr.dtype) != t.dtype:
                raise ContractError(f"{self.name}.{t.name}: dtype {arr.dtype}, the contract says {t.dtype}")
            if arr.ndim != len(t.shape):
                raise ContractError(f"{self.name}.{t.name}: rank {arr.ndim} {tuple(arr.shape)}, the contract says {t.shape}")
            for i, (size, dim) in enumerate(zip(arr.shape, t.shape)):
                if isinstance(dim, int):
                    if size != dim:
                        raise ContractError(f"{self.name}.{t.name}: dim {i} is {size}, the contract fixes it at {dim} (shape {t.shape})")
                    continue
                lo, _, hi = self.axes[dim]
                if not lo <= size <= hi:
                    raise ContractError(f"{self.name}.{t.name}: axis {dim!r} (dim {i}) is {size}, outside the contract's range [{lo}, {hi}]")
                if bound.setdefault(dim, size) != size:
                    raise ContractError(f"{self.name}.{t.name}: axis {dim!r} is {size} here but {bound[dim]} in another input")

    def to_manifest(self) -> dict[str, Any]:
        return {
            "inputs": [{**t.to_dict(), "shape": self.manifest_shape(t)} for t in self.inputs],
            "outputs": [{**t.to_dict(), "shape": self.manifest_shape(t)} for t in self.outputs],
            "profile": self.profile(),
        }


@dataclass(frozen=True)
class ExportShapes:
    """The pixel-space video the bundle is exported for, and the ranges of its dynamic axes."""

    frames: int
    height: int
    width: int
    max_batch: int = 2  # prompts per call; the UNet sees twice that under classifier-free guidance
    min_frames: int = 1
    max_frames: int | None = None
    static: bool = False
    dynamic_spatial: bool = False
    uses_cfg: bool = True

    def axis(self, opt: int, lo: int, hi: int) -> tuple[int, int, int]:
        return (opt, opt, opt) if self.static else (lo, opt, hi)


ComponentBuilder = Callable[[Any, ExportShapes], tuple[Contract, Any]]
COMPONENTS: dict[str, ComponentBuilder] = {}


def register_component(name: str) -> Callable[[ComponentBuilder], ComponentBuilder]:
    def deco(fn: ComponentBuilder) -> ComponentBuilder:
        COMPONENTS[name] = fn
        return fn

    return deco


def vae_factor(model: Any) -> int:
    return 2 ** (len(model.vae.config.block_out_channels) - 1)


def latent_hw(model: Any, shapes: ExportShapes) -> tuple[int, int]:
    f = vae_factor(model)
    if shapes.height % f or shapes.width % f:
        raise ContractError(f"height and width must be multiples of the VAE's factor {f}, got {shapes.height}x{shapes.width}")
    return shapes.height // f, shapes.width // f


def _spatial(shapes: ExportShapes, name: str, size: int) -> tuple[int | str, dict[str, tuple[int, int, int]]]:
    """A static spatial size, or a named axis from half to twice the size when dynamic spatial export is asked."""
    if shapes.dynamic_spatial and not shapes.static:
        return name, {name: (max(1, size // 2), size, size * 2)}
    return size, {}


def call_batch(shapes: ExportShapes) -> tuple[int, int, int]:
    """(min, opt, max) batch of the text encoder and UNet: one prompt plus its unconditional twin is typical."""
    k = 2 if shapes.uses_cfg else 1
    return shapes.axis(k, 1, k * shapes.max_batch)


@register_component("text_encoder")
def text_encoder_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    enc = model.text_encoder
    length = min(int(model.tokenizer.model_max_length), int(enc.config.max_position_embeddings))
    hidden = int(enc.config.hidden_size)
    contract = Contract(
        "text_encoder",
        inputs=(TensorSpec("input_ids", "int64", ("batch", length)),),
        outputs=(TensorSpec("last_hidden_state", "float32", ("batch", length, hidden)),),
        axes={"batch": call_batch(shapes)},
        vocab_size=int(enc.config.vocab_size),
    )

    class TextEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.enc(input_ids).last_hidden_state

    return contract, TextEncoder().eval()


@register_component("unet")
def unet_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    unet, family = model.unet, model.family
    geo = family.geometry(unet)
    h, w = latent_hw(model, shapes)
    hs, ha = _spatial(shapes, "latent_height", h)
    ws, wa = _spatial(shapes, "latent_width", w)
    c = geo.latent_channels
    length = min(int(model.tokenizer.model_max_length), int(model.text_encoder.config.max_position_embeddings))
    hidden = geo.text_dim
    max_frames = shapes.max_frames or shapes.frames
    inputs = [
        TensorSpec("sample", "float32", ("batch", c, "frames", hs, ws)),
        TensorSpec("timestep", "float32", ("batch",)),
        TensorSpec("encoder_hidden_states", "float32", ("batch", length, hidden)),
    ]
    w_dim = geo.guidance_dim
    if w_dim:  # the distilled student's guidance embedding (T2V-Turbo feeds w as timestep_cond)
        inputs.append(TensorSpec("timestep_cond", "float32", ("batch", int(w_dim))))
    contract = Contract(
        "unet",
        inputs=tuple(inputs),
        outputs=(TensorSpec("out_sample", "float32", ("batch", geo.out_channels, "frames", hs, ws)),),
        axes={"batch": call_batch(shapes), "frames": shapes.axis(shapes.frames, shapes.min_frames, max_frames), **ha, **wa},
    )

    class UNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = unet

        def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
            return family.forward(self.unet, sample, timestep, encoder_hidden_states, cond[0] if cond else None)

    return contract, UNet().eval()


def _decoder_spatial(model: Any, shapes: ExportShapes) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """A decoder's latent and pixel height / width (ints, or axis names on a dynamic-spatial profile) and their axes."""
    h, w = latent_hw(model, shapes)
    f = vae_factor(model)
    hs, ha = _spatial(shapes, "latent_height", h)
    ws, wa = _spatial(shapes, "latent_width", w)
    hout = hs * f if isinstance(hs, int) else "height"
    wout = ws * f if isinstance(ws, int) else "width"
    axes = {**ha, **wa}
    if not isinstance(hout, int):
        axes["height"] = tuple(v * f for v in ha["latent_height"])
        axes["width"] = tuple(v * f for v in wa["latent_width"])
    return hs, ws, hout, wout, axes


@register_component("vae_decoder")
def vae_decoder_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    vae = model.vae
    hs, ws, hout, wout, spatial_axes = _decoder_spatial(model, shapes)
    max_frames = shapes.max_frames or shapes.frames
    # One decoder call per frame: N = prompts x frames (the runtime flattens [B, C, F, h, w] to [B*F, C, h, w]).
    n_axis = shapes.axis(shapes.frames, 1, shapes.max_batch * max_frames)
    axes = {"frames_total": n_axis, **spatial_axes}
    contract = Contract(
        "vae_decoder",
        inputs=(TensorSpec("latent", "float32", ("frames_total", int(vae.config.latent_channels), hs, ws)),),
        outputs=(TensorSpec("image", "float32", ("frames_total", 3, hout, wout)),),
        axes=axes,
    )
    scaling = float(vae.config.scaling_factor)

    class VaeDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, latent: torch.Tensor) -> torch.Tensor:
            # The graph owns the scaling and the clamp so every runtime feeds UNet-space latents and gets [-1, 1].
            return self.vae.decode(latent / scaling, return_dict=False)[0].clamp(-1.0, 1.0)

    return contract, VaeDecoder().eval()


def decoder_variant_component(model: Any, shapes: ExportShapes, name: str, decoder: Any) -> tuple[Contract, Any]:
    """A decoder variant of the model directory (``core.tiny_decoder.load_decoder_variant``: a tiny or pruned decoder)
    as component ``vae_decoder_NAME`` with the "clip" layout: the scaled latents [B, C, F, h, w] the UNet returns ->
    frames [B, F, 3, H, W] clamped to [-1, 1] (the variant owns its scaling; a tiny decoder's memory blocks need the
    clip's frames together, so it is not called per frame as the full decoder is). The DiT family's: ``export.dit``."""
    hs, ws, hout, wout, spatial_axes = _decoder_spatial(model, shapes)
    axes = {"batch": shapes.axis(1, 1, shapes.max_batch), "frames": shapes.axis(shapes.frames, shapes.min_frames, shapes.max_frames or shapes.frames),
            **spatial_axes}
    contract = Contract(
        f"vae_decoder_{name}",
        inputs=(TensorSpec("latent", "float32", ("batch", int(model.vae.config.latent_channels), "frames", hs, ws)),),
        outputs=(TensorSpec("image", "float32", ("batch", "frames", 3, hout, wout)),),
        axes=axes,
    )
    check_variant_frames(name, decoder, contract)
    return contract, variant_module(decoder)


def check_variant_frames(name: str, decoder: Any, contract: Contract) -> None:
    """Run a variant once on zeros at its contract's latent shape ("opt") and refuse, in one line, one that cannot take
    the model's latents or makes another clip than the contract's (the full decoder's frame count and size), so a
    runtime can swap the variant for the full decoder: e.g. a tiny decoder trained for another autoencoder, or one with
    temporal upsampling in a per-frame UNet bundle."""
    import torch

    latent, image = contract.shape_at(contract.inputs[0], "opt"), contract.shape_at(contract.outputs[0], "opt")
    fix = "train one for this model with `turbo-edge decoder train --model MODEL_DIR`"
    try:
        with torch.no_grad():
            out = decoder(torch.zeros(latent))
    except Exception as exc:  # a channel count or a rank the decoder was not built for: the layer's own error, shortened
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ContractError(f"the {name!r} decoder cannot decode this model's latents {list(latent)} ({type(exc).__name__}: {first}); {fix}") from None
    if tuple(out.shape) != tuple(image):
        t = getattr(decoder, "temporal_factor", 1)
        raise ContractError(f"the {name!r} decoder (temporal upsampling {t}x) turns latents {list(latent)} into frames {list(out.shape)}, but this "
                            f"bundle's full decoder makes {list(image)} [B, F, 3, H, W], so a runtime could not swap one for the other; {fix}")


def variant_module(decoder: Any) -> Any:
    """The exported module of a decoder variant: the variant's frames, clamped to [-1, 1] as every decoder graph's."""
    import torch

    class VariantDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, latent: torch.Tensor) -> torch.Tensor:
            return self.decoder(latent).clamp(-1.0, 1.0)

    return VariantDecoder().eval()


def build_components(model: Any, shapes: ExportShapes, names: tuple[str, ...],
                     registry: dict[str, ComponentBuilder] | None = None) -> dict[str, tuple[Contract, Any]]:
    """Each named component's contract and module; ``registry``: a family's own builders (``export.dit.COMPONENTS``)."""
    builders = COMPONENTS if registry is None else registry
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; exportable: {sorted(builders)}")
    return {n: builders[n](model, shapes) for n in names}
