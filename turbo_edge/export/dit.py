"""Export contracts of the DiT family (Wan2.1: ``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5), in exportable form.

Three graphs (and decoder variants), with the bundle's component names (``export.contracts``; the ``unet`` slot holds the denoiser, whatever
its kind, so the manifest's schema and every reader stay as they are):

- ``text_encoder``: UMT5 with its attention mask, ``(input_ids, attention_mask) -> last_hidden_state``, zero past each
  prompt's length (``core.text_encoders.masked_hidden_states``, as WanPipeline);
- ``unet``: the transformer, ``(sample, timestep, encoder_hidden_states[, timestep_cond]) -> out_sample``. While the
  ONNX exporter traces it (``torch.onnx.is_in_onnx_export()``), three parts run in exportable form, numerically the
  same: RoPE's tables are float32 copies of diffusers' float64 buffers and the rotation is real-valued
  (``x1 cos - x2 sin``, ``x1 sin + x2 cos`` stacked, no strided write, so no ScatterND and no float64 for TensorRT);
  ``torch.nn.RMSNorm`` (``aten::rms_norm``, which the TorchScript exporter cannot take at opset <= 20) is written out as
  ``x * rsqrt(mean(x^2) + eps) * weight``; attention is ``scaled_dot_product_attention``. Outside the exporter
  (the parity reference, calibration) the module is diffusers' own, untouched;
- ``vae_decoder``: the causal decoder over a whole clip, ``latent [B, z, f, h, w] -> video [B, 3, 1 + t(f - 1), H, W]``:
  diffusers' own frame-by-frame decode with its causal cache, unrolled by the tracer over the profile's latent frames
  (a static axis: one graph per clip length), the normalisation (``latents_mean`` / ``latents_std``) inside. A bundle
  exported for a range of clip lengths (``--min-frames / --max-frames``) has the decoder as two step graphs instead,
  the cache explicit (``decoder_step_components``): ``vae_decoder_first`` (latent frame 0 -> pixel frame 0 and the
  cache) and ``vae_decoder`` (one later latent frame and the cache -> its t pixel frames and the next cache), which the
  runtimes loop over the clip's latent frames;
- ``vae_decoder_NAME`` (``export --decoder full,tiny``): a ``decoder train`` tiny decoder, ``latent [B, z, f, h, w] ->
  image [B, 1 + t(f - 1), 3, H, W]``, the full decoder's clip from the same normalised latents (``decoder_variant_component``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from turbo_edge.export.contracts import (
    Contract,
    ContractError,
    ExportShapes,
    TensorSpec,
    call_batch,
    check_variant_frames,
    variant_module,
)
from turbo_edge.spec.sampler import SamplerSpec

log = logging.getLogger(__name__)

FAMILY = "wan"


def is_dit(model: Any) -> bool:
    """Whether a loaded ``T2VModel`` is of the DiT (Wan) family, which this module exports."""
    return getattr(getattr(model, "components", None), "name", None) == FAMILY


# ---------------------------------------------------------------- exportable parts of the transformer


def _torch_modules() -> tuple[Any, Any]:
    import torch

    class DecomposedRMSNorm(torch.nn.Module):
        """``torch.nn.RMSNorm`` as elementwise ops (opset 17 has no RMSNormalization); shares the original's weight."""

        def __init__(self, norm: torch.nn.RMSNorm) -> None:
            super().__init__()
            self.weight = norm.weight
            self.eps = norm.eps
            self.dims = tuple(range(-len(norm.normalized_shape), 0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
            y = x * torch.rsqrt(x.pow(2).mean(dim=self.dims, keepdim=True) + eps)
            return y * self.weight if self.weight is not None else y

    class RealRope(torch.nn.Module):
        """diffusers' ``WanRotaryPosEmbed`` with float32 tables, each pair's (cos, sin) kept once ([S, D / 2])."""

        def __init__(self, rope: torch.nn.Module) -> None:
            super().__init__()
            self.patch_size = rope.patch_size
            self.split = [rope.t_dim // 2, rope.h_dim // 2, rope.w_dim // 2]
            # diffusers repeats each frequency twice (repeat_interleave_real): the even columns hold each once.
            self.register_buffer("cos", rope.freqs_cos[:, 0::2].float().clone(), persistent=False)
            self.register_buffer("sin", rope.freqs_sin[:, 0::2].float().clone(), persistent=False)

        def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            _, _, frames, height, width = hidden_states.shape
            p_t, p_h, p_w = self.patch_size
            ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
            tables = []
            for table in (self.cos, self.sin):
                t, h, w = table.split(self.split, dim=1)
                parts = [t[:ppf].view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                         h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                         w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1)]
                tables.append(torch.cat(parts, dim=-1).reshape(1, ppf * pph * ppw, 1, -1))
            return tables[0], tables[1]

    return DecomposedRMSNorm, RealRope


def rotate(x: Any, cos: Any, sin: Any) -> Any:
    """RoPE on interleaved pairs ``(x[2i], x[2i+1])`` without a strided write: rotate, stack, flatten."""
    import torch

    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class ExportAttnProcessor:
    """diffusers' ``WanAttnProcessor`` (text-to-video: no image keys) with ``rotate`` for RoPE and plain SDPA."""

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None, attention_mask: Any = None,
                 rotary_emb: tuple[Any, Any] | None = None) -> Any:
        import torch.nn.functional as F

        if attn.add_k_proj is not None:
            raise ContractError("this Wan transformer has image conditioning (I2V: add_k_proj); turbo-edge exports text-to-video only")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = rotate(query, *rotary_emb), rotate(key, *rotary_emb)
        out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=attention_mask)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


@contextlib.contextmanager
def exportable(transformer: Any) -> Iterator[Any]:
    """Swap the transformer's RoPE, RMSNorms and attention processors for their exportable forms, and back after."""
    import torch

    DecomposedRMSNorm, RealRope = _torch_modules()
    swaps: list[tuple[Any, str, Any]] = []
    for parent in transformer.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.RMSNorm):
                swaps.append((parent, name, child))
                setattr(parent, name, DecomposedRMSNorm(child))
    old_rope = transformer.rope
    transformer.rope = RealRope(old_rope)
    processors = transformer.attn_processors
    transformer.set_attn_processor(ExportAttnProcessor())
    try:
        yield transformer
    finally:
        transformer.set_attn_processor(processors)
        transformer.rope = old_rope
        for parent, name, child in swaps:
            setattr(parent, name, child)


@contextlib.contextmanager
def exportable_decoder(vae: Any) -> Iterator[Any]:
    """The Wan decoder's ``nearest-exact`` upsampling (no ONNX symbolic at opset 17) as ``nearest``, while exporting.
    At an integer scale factor both pick source pixel ``floor(dst / s)`` (nearest-exact: ``floor((dst + 0.5) / s)``,
    the same integer for s = 2), so the graph is the same function; other factors are refused."""
    import torch

    changed = []
    for module in vae.modules():
        if isinstance(module, torch.nn.Upsample) and module.mode == "nearest-exact":
            factors = module.scale_factor if isinstance(module.scale_factor, tuple) else (module.scale_factor,)
            if not all(float(f).is_integer() for f in factors):
                raise ContractError(f"the Wan decoder upsamples by {factors}: only integer factors export (nearest-exact == nearest there)")
            module.mode = "nearest"
            changed.append(module)
    try:
        yield vae
    finally:
        for module in changed:
            module.mode = "nearest-exact"


def exportable_module(module: Any) -> Any:
    """``module`` (one tensor in, one out) run under ``exportable_decoder`` while the exporter traces it: a module
    holding the Wan decoder's own blocks (the pruned causal decoder) exports as the same function."""
    import torch

    class Exportable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, latent: torch.Tensor) -> torch.Tensor:
            with exportable_decoder(self.inner) if torch.onnx.is_in_onnx_export() else contextlib.nullcontext():
                return self.inner(latent)

    return Exportable().eval()


# ---------------------------------------------------------------- contracts


@dataclasses.dataclass(frozen=True)
class MaskedTextContract(Contract):
    """A text encoder taking an attention mask: sample masks are prefixes of ones (a prompt, then padding), the ids past
    each prompt the pad id, as the tokenizer makes them; one row at full length, one at a single token."""

    pad_id: int = 0

    def sample_inputs(self, point: str = "opt") -> dict[str, np.ndarray]:
        feeds = super().sample_inputs(point)
        ids = feeds["input_ids"]
        b, length = ids.shape
        rng = np.random.default_rng(self.seed + 1)
        lengths = rng.integers(1, length + 1, size=b)
        lengths[0] = length
        if b > 1:
            lengths[-1] = 1
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
        feeds["input_ids"] = np.where(mask == 1, ids, self.pad_id).astype(np.int64)
        feeds["attention_mask"] = mask
        return feeds


@dataclasses.dataclass(frozen=True)
class StepDecoderContract(Contract):
    """The causal decoder's step graph: sample caches are ones the decoder reaches (``vae_decoder_first`` then one step
    on two other seeded latent frames), not N(0, 1) noise: the gates compare graphs on the states the runtime feeds,
    and an fp16 graph's error on a cache is measured at the cache's own scale."""

    steps: tuple[Any, ...] = dataclasses.field(default=(), compare=False, repr=False)  # (first, step) modules

    def sample_inputs(self, point: str = "opt") -> dict[str, np.ndarray]:
        feeds = super().sample_inputs(point)
        if not self.steps:
            return feeds
        import torch

        first, step = self.steps
        rng = np.random.default_rng(self.seed + 1)
        frames = [torch.from_numpy(rng.standard_normal(feeds["latent"].shape).astype(np.float32)) for _ in range(2)]
        with torch.no_grad():
            cache = first(frames[0])[1:]
            cache = step(frames[1], *cache)[1:]
        return {**feeds, **{f"cache_{i}": c.numpy() for i, c in enumerate(cache)}}


def text_length(model: Any) -> int:
    return int(model.components.text.max_length(model.text_encoder, model.tokenizer))


def latent_size(model: Any, shapes: ExportShapes) -> tuple[int, int, int]:
    """(latent frames, height, width) of the bundle's clip; a clip the model cannot take is one line naming the rule."""
    geo = model.components.autoencoder.geometry(model.vae)
    multiple = model.components.spatial_multiple(dict(model.vae.config), dict(model.unet.config))
    try:
        geo.check(shapes.frames, shapes.height, shapes.width, multiple)
    except ValueError as exc:
        raise ContractError(str(exc)) from None
    return geo.latent_frames(shapes.frames), shapes.height // geo.spatial_factor, shapes.width // geo.spatial_factor


def _spatial_axes(shapes: ExportShapes, h: int, w: int, factor: int) -> tuple[Any, Any, Any, Any, dict[str, tuple[int, int, int]]]:
    if not shapes.dynamic_spatial or shapes.static:
        return h, w, h * factor, w * factor, {}
    # A patch of 2 latents per token: sizes stay even (the profile's ends are the parity gate's points).
    lo_h, lo_w = max(2, (h // 2) // 2 * 2), max(2, (w // 2) // 2 * 2)
    axes = {"latent_height": (lo_h, h, 2 * h), "latent_width": (lo_w, w, 2 * w),
            "height": (lo_h * factor, h * factor, 2 * h * factor), "width": (lo_w * factor, w * factor, 2 * w * factor)}
    return "latent_height", "latent_width", "height", "width", axes


def text_encoder_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    from turbo_edge.core.text_encoders import masked_hidden_states

    enc = model.text_encoder
    length, hidden = text_length(model), int(enc.config.d_model)
    contract = MaskedTextContract(
        "text_encoder",
        inputs=(TensorSpec("input_ids", "int64", ("batch", length)), TensorSpec("attention_mask", "int64", ("batch", length))),
        outputs=(TensorSpec("last_hidden_state", "float32", ("batch", length, hidden)),),
        axes={"batch": call_batch(shapes)},
        vocab_size=int(enc.config.vocab_size),
        pad_id=int(model.tokenizer.pad_token_id or 0),
    )

    class TextEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return masked_hidden_states(self.enc, input_ids, attention_mask)

    return contract, TextEncoder().eval()


def denoiser_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    transformer, family = model.unet, model.family
    geo = family.geometry(transformer)
    _, h, w = latent_size(model, shapes)
    hs, ws, _, _, axes = _spatial_axes(shapes, h, w, 1)
    axes = {k: v for k, v in axes.items() if k.startswith("latent_")}
    f, frame_axes = _frames_axis(model, shapes)  # a range of clip lengths: frames dynamic within the RoPE table
    axes |= frame_axes
    inputs = [
        TensorSpec("sample", "float32", ("batch", geo.latent_channels, f, hs, ws)),
        TensorSpec("timestep", "float32", ("batch",)),
        TensorSpec("encoder_hidden_states", "float32", ("batch", text_length(model), geo.text_dim)),
    ]
    if geo.guidance_dim:  # a distilled student's guidance embedding (core.denoiser.attach_wan_guidance_embedding)
        inputs.append(TensorSpec("timestep_cond", "float32", ("batch", int(geo.guidance_dim))))
    # Traced at batch 1 ("min"): the TorchScript tracer keeps the result of every op with a Python-scalar operand
    # alive until the trace ends (measured: a Wan block at 1,280 tokens holds ~0.2 GiB per batch row), which for a
    # 30-block transformer at batch 2 would be ~12 GiB on top of the model. The gate still checks batch 1 and 2.
    contract = Contract(
        "unet", inputs=tuple(inputs),
        outputs=(TensorSpec("out_sample", "float32", ("batch", geo.out_channels, f, hs, ws)),),
        axes={"batch": call_batch(shapes), **axes}, trace_point="min",
    )

    class Denoiser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
            guidance = cond[0] if cond else None
            if torch.onnx.is_in_onnx_export():
                with exportable(self.transformer):
                    return family.forward(self.transformer, sample, timestep, encoder_hidden_states, guidance)
            return family.forward(self.transformer, sample, timestep, encoder_hidden_states, guidance)

    return contract, Denoiser().eval()


def vae_decoder_component(model: Any, shapes: ExportShapes) -> tuple[Contract, Any]:
    import torch

    vae, auto = model.vae, model.components.autoencoder
    geo = auto.geometry(vae)
    f, h, w = latent_size(model, shapes)
    hs, ws, hout, wout, axes = _spatial_axes(shapes, h, w, geo.spatial_factor)
    contract = Contract(
        "vae_decoder",
        inputs=(TensorSpec("latent", "float32", ("batch", geo.channels, f, hs, ws)),),
        outputs=(TensorSpec("video", "float32", ("batch", 3, geo.pixel_frames(f), hout, wout)),),
        axes={"batch": shapes.axis(1, 1, shapes.max_batch), **axes},
    )

    class VaeDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, latent: torch.Tensor) -> torch.Tensor:
            # Normalised latents in, [-1, 1] frames out: diffusers' own causal decode, one latent frame per step with
            # its cache (the exporter unrolls the loop), then the clamp, as core.autoencoders.CausalWan.decode_pixels.
            mean, std = auto._stats(self.vae, latent)
            if torch.onnx.is_in_onnx_export():
                with exportable_decoder(self.vae):
                    return self.vae.decode(latent * std + mean, return_dict=False)[0].clamp(-1.0, 1.0)
            return self.vae.decode(latent * std + mean, return_dict=False)[0].clamp(-1.0, 1.0)

    return contract, VaeDecoder().eval()


def frame_range(model: Any, shapes: ExportShapes) -> tuple[int, int, int] | None:
    """(min, opt, max) latent frames of a bundle exported for a range of clip lengths (``--min-frames / --max-frames``),
    else None (one clip length: the whole-clip decoder)."""
    lo, hi = shapes.min_frames, shapes.max_frames or shapes.frames
    if lo == hi == shapes.frames:
        return None
    geo = model.components.autoencoder.geometry(model.vae)
    return geo.latent_frames(lo), geo.latent_frames(shapes.frames), geo.latent_frames(hi)


def _frames_axis(model: Any, shapes: ExportShapes) -> tuple[Any, dict[str, tuple[int, int, int]]]:
    """The latent frames of the transformer's and a variant decoder's profile: a fixed int, or the axis ``latent_frames``
    over the bundle's range."""
    span = frame_range(model, shapes)
    if span is None or shapes.static:
        return latent_size(model, shapes)[0], {}
    return "latent_frames", {"latent_frames": span}


def decoder_step(vae: Any, x: Any, caches: tuple[Any, ...], first: bool) -> tuple[Any, list[Any]]:
    """One step of diffusers' own causal decode (``AutoencoderKLWan._decode``'s loop body) with its cache explicit:
    ``x`` one latent frame after ``post_quant_conv`` [B, z, 1, h, w] -> (its pixel frames, clamped, and the cache
    for the next step). Every cache entry is a 2-frame tensor: diffusers' list holds, per causal conv, the last
    CACHE_T = 2 frames of its input, one frame (no entry) after the first latent frame, where the conv pads with zeros;
    zeros in front of that frame are the same numbers, so the first step returns them padded, and the step after
    feeds them back. The time upsampling's conv has the string "Rep" after the first frame (which it skips: one pixel
    frame, not t) and convolves the next one over zero padding: that entry is returned as zeros of its input's shape.
    ``first``: latent frame 0 (``first_chunk``, no cache in); else ``caches`` are the previous step's."""
    import torch

    slots = sum(type(m).__name__ == "WanCausalConv3d" for m in vae.decoder.modules())
    seen: list[Any] = []  # the time upsampling's inputs, in call order (one per "Rep" entry)
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for m in vae.decoder.modules()
             if getattr(m, "mode", None) == "upsample3d"]
    feat: list[Any] = [None] * slots if first else [*caches, *[None] * (slots - len(caches))]
    index = [0]
    try:
        out = vae.decoder(x, feat_cache=feat, feat_idx=index, first_chunk=first)
    finally:
        for hook in hooks:
            hook.remove()
    if getattr(vae.config, "patch_size", None):  # Wan2.2's autoencoder: pixels folded into channels
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        out = unpatchify(out, patch_size=vae.config.patch_size)
    nxt = []
    for entry in feat[: index[0]]:
        if isinstance(entry, str):  # "Rep": the time upsampling's conv did not run on this frame
            zeros = torch.zeros_like(seen.pop(0)[:, :, -1:])
            entry = torch.cat([zeros, zeros], dim=2)
        elif entry.shape[2] < 2:
            entry = torch.cat([torch.zeros_like(entry), entry], dim=2)
        nxt.append(entry)
    return out.clamp(-1.0, 1.0), nxt


def decoder_cache_layout(model: Any) -> list[tuple[int, int]]:
    """(channels, spatial scale over the latent) of each cache tensor the step decoder carries, from one first step
    at a 2x2 latent (cheap at any model size)."""
    import torch

    vae = model.vae
    z = int(model.components.autoencoder.geometry(vae).channels)
    dtype = next(vae.parameters()).dtype
    with torch.no_grad():
        _, caches = decoder_step(vae, vae.post_quant_conv(torch.zeros(1, z, 1, 2, 2, dtype=dtype)), (), first=True)
    return [(int(c.shape[1]), int(c.shape[3]) // 2) for c in caches]


def decoder_step_components(model: Any, shapes: ExportShapes) -> dict[str, tuple[Contract, Any]]:
    """The causal decoder of a bundle with a range of clip lengths, as two graphs with the cache explicit
    (``decoder_step``): ``vae_decoder_first`` ``latent [B, z, 1, h, w] -> video [B, 3, 1, H, W], next_cache_i`` and
    ``vae_decoder`` ``latent [B, z, 1, h, w], cache_i -> video [B, 3, t, H, W], next_cache_i`` (cache_i
    [B, C_i, 2, h s_i, w s_i]), the normalisation inside as the whole-clip graph's. The runtimes call the first on
    latent frame 0, then the step on each later frame with the cache the call before returned: any clip length."""
    import torch

    from turbo_edge.spec.bundle import DECODER_FIRST_STEP

    vae, auto = model.vae, model.components.autoencoder
    geo = auto.geometry(vae)
    _, h, w = latent_size(model, shapes)
    hs, ws, hout, wout, axes = _spatial_axes(shapes, h, w, geo.spatial_factor)

    def scaled(size: Any, axis: str, s: int) -> Any:
        if isinstance(size, int):
            return size * s
        name = {1: axis, geo.spatial_factor: axis.removeprefix("latent_")}.get(s, f"{axis}_x{s}")
        axes.setdefault(name, tuple(v * s for v in axes[axis]))
        return name

    layout = decoder_cache_layout(model)
    caches = [("batch", c, 2, scaled(hs, "latent_height", s), scaled(ws, "latent_width", s)) for c, s in layout]
    latent = TensorSpec("latent", "float32", ("batch", geo.channels, 1, hs, ws))
    nxt = tuple(TensorSpec(f"next_cache_{i}", "float32", shape) for i, shape in enumerate(caches))
    batch = {"batch": shapes.axis(1, 1, shapes.max_batch)}
    first = Contract(DECODER_FIRST_STEP, inputs=(latent,), outputs=(TensorSpec("video", "float32", ("batch", 3, 1, hout, wout)), *nxt),
                     axes={**batch, **axes})

    class VaeDecoderStep(torch.nn.Module):
        def __init__(self, is_first: bool) -> None:
            super().__init__()
            self.vae, self.is_first = vae, is_first

        def forward(self, latent: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
            mean, std = auto._stats(self.vae, latent)
            x = self.vae.post_quant_conv(latent * std + mean)
            with exportable_decoder(self.vae) if torch.onnx.is_in_onnx_export() else contextlib.nullcontext():
                video, nxt = decoder_step(self.vae, x, cache, self.is_first)
            return (video, *nxt)

    modules = (VaeDecoderStep(True).eval(), VaeDecoderStep(False).eval())
    step = StepDecoderContract("vae_decoder", inputs=(latent, *(TensorSpec(f"cache_{i}", "float32", shape) for i, shape in enumerate(caches))),
                               outputs=(TensorSpec("video", "float32", ("batch", 3, geo.temporal_factor, hout, wout)), *nxt),
                               axes={**batch, **axes}, steps=modules)
    return {DECODER_FIRST_STEP: (first, modules[0]), "vae_decoder": (step, modules[1])}


def decoder_variant_component(model: Any, shapes: ExportShapes, name: str, decoder: Any) -> tuple[Contract, Any]:
    """A decoder variant of a Wan model (a ``decoder train`` tiny or pruned decoder) as component ``vae_decoder_NAME``, the "clip"
    layout of every variant with the causal autoencoder's time upsampling: ``latent [B, z, f, h, w] -> image [B, F, 3,
    H, W]``, F = 1 + t (f - 1), clamped to [-1, 1]. It makes the full decoder's clip (``vae_decoder_component``: the same
    frames, size and range, frame k of one is frame k of the other) from the same input: the normalised latents the
    transformer samples. The full graph undoes ``latents_mean`` / ``latents_std`` inside; the tiny decoder was trained on
    the normalised latents against that same decode (``core.tiny_decoder.AutoencoderKLWanTarget``), so it takes them as
    they are and the runtime feeds both decoders one tensor. Its geometry is checked by running it once
    (``contracts.check_variant_frames``: a decoder made for another autoencoder is refused in one line). A pruned
    variant (``core.pruned_wan_decoder``) takes the same tensor and runs diffusers' causal loop inside, unrolled: one
    clip length per graph."""
    geo = model.components.autoencoder.geometry(model.vae)
    _, h, w = latent_size(model, shapes)
    hs, ws, hout, wout, axes = _spatial_axes(shapes, h, w, geo.spatial_factor)
    f, frame_axes = _frames_axis(model, shapes)
    causal = bool(getattr(decoder, "causal", False))
    if frame_axes and causal:
        raise ContractError(f"the {name!r} decoder is the causal Wan decoder pruned: its per-frame loop unrolls into the graph, so it exports "
                            "for one clip length; export without --min-frames / --max-frames, or choose --decoder full,tiny")
    if frame_axes:  # a bundle with a range of clip lengths: the variant (no causal cache) is dynamic in frames
        frame_axes["frames"] = tuple(geo.pixel_frames(v) for v in frame_axes["latent_frames"])
    contract = Contract(
        f"vae_decoder_{name}",
        inputs=(TensorSpec("latent", "float32", ("batch", geo.channels, f, hs, ws)),),
        outputs=(TensorSpec("image", "float32", ("batch", "frames" if frame_axes else geo.pixel_frames(f), 3, hout, wout)),),
        axes={"batch": shapes.axis(1, 1, shapes.max_batch), **axes, **frame_axes},
    )
    check_variant_frames(name, decoder, contract)
    module = variant_module(decoder)
    return contract, exportable_module(module) if causal else module


COMPONENTS = {"text_encoder": text_encoder_component, "unet": denoiser_component, "vae_decoder": vae_decoder_component}


# ---------------------------------------------------------------- bundle sections

# fp16 variants a DiT bundle gets by default: the transformer only. Measured on diffusers' Wan test config (ORT CPU,
# onnxruntime.transformers' converter, I/O fp32): transformer max_abs 0.018 (gate 0.05); UMT5 0.085-0.091 and the causal
# decoder 0.12, with or without ReduceL2 / Pow / ReduceMean kept in fp32 (T5 is known to overflow in fp16). Those two
# stay fp32 in an fp16 bundle (the runtime falls back to a component's fp32 graph); naming them in
# ``fp16_components`` still converts and gates them.
FP16_COMPONENTS = ("unet",)


def export_config(cfg: Any) -> Any:
    """The export config as a DiT bundle runs it: the default ``fp16_components`` narrowed to ``FP16_COMPONENTS``."""
    from turbo_edge.spec.bundle import COMPONENTS as ALL

    if "int8" in cfg.precisions and cfg.int8_scope == "conv":
        log.warning("int8_scope conv (this CPU has no int8 dot products) leaves a DiT's matmuls fp32: its int8 graph quantizes the patch "
                    "embedding alone; set int8_scope=all to quantize the transformer's linear layers")
    if "fp16" in cfg.precisions and tuple(cfg.fp16_components) == tuple(ALL):
        log.info("fp16: the DiT's transformer only (%s); the text encoder and the causal decoder stay fp32 (set fp16_components to force)",
                 ", ".join(FP16_COMPONENTS))
        return cfg.replace(fp16_components=FP16_COMPONENTS)
    return cfg



def resolve_shapes(model: Any, cfg: Any, uses_cfg: bool) -> ExportShapes:
    """The clips a DiT bundle serves: ``--frames/--height/--width``, else the card's, else the family's (one line if the
    model cannot take it, ``core.sampling.clip_geometry``); with ``--min-frames`` / ``--max-frames`` every length
    1 + tk between them (each end checked the same way; the default length kept inside the range), else that one length."""
    from turbo_edge.core.sampling import clip_geometry

    ranged = cfg.max_frames is not None or cfg.min_frames != 1
    try:
        frames, height, width = clip_geometry(model, cfg.frames, cfg.height, cfg.width)
        if ranged:
            if cfg.static:
                raise ValueError("--static fixes every axis at one size: export a range of clip lengths (min_frames / max_frames) without it")
            lo, hi = cfg.min_frames, cfg.max_frames or frames
            for end in (lo, hi):
                clip_geometry(model, end, height, width)
            if lo > hi:
                raise ValueError(f"min_frames {lo} is above max_frames {hi}")
            if cfg.frames is None:  # the model's own length, moved into the range
                frames = min(max(frames, lo), hi)
            elif not lo <= frames <= hi:
                raise ValueError(f"frames {frames} is outside min_frames..max_frames {lo}..{hi}")
        else:
            lo = hi = frames
    except ValueError as exc:
        raise ContractError(str(exc)) from None
    return ExportShapes(frames, height, width, max_batch=cfg.max_batch, min_frames=lo, max_frames=hi, static=cfg.static,
                        dynamic_spatial=cfg.dynamic_spatial, uses_cfg=uses_cfg)


def build(model: Any, shapes: ExportShapes, names: tuple[str, ...]) -> dict[str, tuple[Contract, Any]]:
    """The DiT's components (``COMPONENTS``); with a range of clip lengths the decoder as its two step graphs
    (``decoder_step_components``) in place of the whole-clip one."""
    from turbo_edge.export.contracts import build_components

    components = build_components(model, shapes, tuple(n for n in names if n != "vae_decoder" or frame_range(model, shapes) is None), COMPONENTS)
    if "vae_decoder" in names and frame_range(model, shapes) is not None:
        components |= decoder_step_components(model, shapes)
    return components


def sampler_contract(model: Any, cfg: Any) -> SamplerSpec:
    """A flow teacher's contract: Euler over its scheduler's shifted sigmas with CFG (the sigmas checked against the
    diffusers scheduler's own); a student's card contract as it is (its kind and parameterisation are the card's)."""
    if model.card.sampler is not None:
        sampler = model.card.sampler.with_steps(cfg.default_steps, cfg.supported_steps, cfg.guidance)
        if sampler.parameterisation != "flow":
            raise ContractError(f"{model.path}: the card's sampler contract is {sampler.parameterisation}, but a Wan model is flow matching")
        return sampler
    config = dict(model.scheduler.config)
    name = type(model.scheduler).__name__
    if name != "FlowMatchEulerDiscreteScheduler":
        log.warning("%s samples with %s in PyTorch; the bundle's runtimes sample with flow Euler over the same shifted sigmas", model.path, name)
    sampler = SamplerSpec.flow_euler_cfg(config, guidance=model.card.default_guidance)
    sampler = sampler.with_steps(cfg.default_steps, cfg.supported_steps, cfg.guidance)
    if name == "FlowMatchEulerDiscreteScheduler":
        check_sigmas(model, sampler)
    return sampler


def check_sigmas(model: Any, sampler: SamplerSpec) -> None:
    """The contract's sigmas equal the diffusers scheduler's at every step count, or export stops (a scheduler option
    ``spec.param.flow_sigmas`` does not model: dynamic shifting, Karras sigmas, a terminal shift...)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler.config)
    for steps, sigmas in (sampler.sigmas or {}).items():
        scheduler.set_timesteps(steps)
        ref = scheduler.sigmas.double().numpy()
        if ref.shape != (len(sigmas),) or np.abs(ref - np.asarray(sigmas)).max() > 1e-6:
            raise ContractError(f"{model.path}: the scheduler's {steps}-step sigmas {ref.round(4).tolist()} are not flow_sigmas with shift "
                                f"{sampler.flow_shift} {np.round(sigmas, 4).tolist()}: a scheduler option turbo-edge does not model")


def describe(model: Any, shapes: ExportShapes, components: dict[str, tuple[Contract, Any]]) -> dict[str, Any]:
    """The manifest's geometry sections for a DiT bundle: the causal geometry and the normalisation read by the runtime."""
    auto = model.components.autoencoder
    geo = auto.geometry(model.vae)
    f, h, w = latent_size(model, shapes)
    return {
        "latent": {"channels": geo.channels, "frames": f, "height": h, "width": w, "autoencoder": auto.name,
                   "spatial_factor": geo.spatial_factor, "temporal_factor": geo.temporal_factor, "causal_first_frame": geo.causal_first_frame,
                   **auto.normalisation(model.vae)},
        "video": {"frames": shapes.frames, "height": shapes.height, "width": shapes.width, "fps": int(model.card.fps),
                  "lead_in_frames": int(model.card.lead_in_frames)},
        "text": {"max_length": text_length(model), "hidden_size": int(model.text_encoder.config.d_model),
                 "closed_vocabulary": model.closed_vocabulary, "attention_mask": True},
    }


# ---------------------------------------------------------------- int8 calibration


def flow_teacher_calibration(model: Any, cfg: Any, shapes: ExportShapes, input_names: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """Transformer inputs along the flow teacher's own Euler + CFG trajectory (the model's flow scheduler at
    ``int8_calibration_steps``, else the bundle's ``default_steps``), on the calibration prompts: one item per prompt
    and step, laid out as the runtime calls it ([uncond_i, cond_i]), timestep-major (``quantize._timestep_major``)."""
    import dataclasses

    import torch

    from turbo_edge.core.sampling import ddim_cfg_sample, encode_text, initial_noise, latent_shape, sampling_scheduler
    from turbo_edge.export import quantize
    from turbo_edge.spec.sampler import DEFAULT_TEACHER_STEPS

    if "timestep_cond" in input_names:
        raise ValueError("a transformer with a guidance embedding (timestep_cond) is a student: calibrate it with its own sampler")
    steps = cfg.int8_calibration_steps or cfg.default_steps or DEFAULT_TEACHER_STEPS
    guidance = cfg.guidance if cfg.guidance is not None else float(model.card.default_guidance)
    plan = quantize.calibration_plan(len(prompts := quantize._prompts(cfg)), steps, cfg.int8_subset_size)
    prompts = prompts[: plan.prompts]
    shape = latent_shape(model, shapes.frames, shapes.height, shapes.width)
    x = initial_noise(shape, cfg.seed + 1000, len(prompts))
    cond, uncond = encode_text(model, prompts), encode_text(model, [""] * len(prompts))
    metered = quantize.MeteredUNet(model.unet, plan)
    denoiser = dataclasses.replace(model, denoiser=metered)
    per_prompt: list[list[dict[str, np.ndarray]]] = []

    def recording(sample: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        per_prompt[-1].append({"sample": sample.numpy().astype(np.float32), "timestep": t.float().numpy().astype(np.float32),
                               "encoder_hidden_states": text.numpy().astype(np.float32)})
        return denoiser.denoise(sample, t, text)

    try:
        with torch.no_grad():
            for i in range(len(prompts)):
                per_prompt.append([])
                scheduler = sampling_scheduler(model, steps)  # a flow scheduler counts its steps: a fresh one per trajectory
                ddim_cfg_sample(recording, scheduler, x[i : i + 1], cond[i : i + 1], uncond[i : i + 1], guidance)
    finally:
        metered.close()
    return quantize._timestep_major(per_prompt, plan.samples)


def _register() -> None:
    from turbo_edge.export.quantize import CALIBRATION_SOURCES

    CALIBRATION_SOURCES.setdefault("flow_euler_cfg", flow_teacher_calibration)


_register()
