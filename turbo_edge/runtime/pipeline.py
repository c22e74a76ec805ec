"""The thin runtime: bundle -> tokenizer -> text encoder (cached) -> few-step sampler -> VAE decoder -> uint8 frames.

No torch. Every model call goes through a backend ``Binding`` (buffers preallocated per shape set and per
thread), so one ``Pipeline`` serves concurrent ``generate`` calls with exactly the outputs of serial calls
and the sampling loop allocates nothing but the re-injected noise.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from turbo_edge.runtime import samplers
from turbo_edge.runtime.backends import Backend, Binding, create_backend
from turbo_edge.spec.bundle import COMPONENTS, DECODER_FIRST_STEP, Bundle, load_bundle
from turbo_edge.spec.configs import RuntimeConfig
from turbo_edge.spec.errors import BackendUnavailableError, BundleError, GenerationCancelled, RuntimeInputError
from turbo_edge.spec.inputs import check_closed_vocabulary, check_guidance, check_prompt_text, check_seed
from turbo_edge.spec.noise import normal, stream_id
from turbo_edge.spec.unigram import load_tokenizer


class PromptTruncatedWarning(UserWarning):
    """The prompt had more tokens than the text encoder takes; its tail was dropped."""


@dataclass
class GenerationResult:
    frames: np.ndarray  # uint8 [B, F, H, W, 3]
    truncated: list[bool]  # per prompt: tokens beyond the text encoder's length were dropped
    steps: int
    session_seconds: dict[str, float] = field(default_factory=dict)  # time inside backend.infer, per component


# The inputs each component's graph must take (the export contract's names; timestep_cond is optional).
GRAPH_INPUTS = {"text_encoder": ("input_ids",), "unet": ("sample", "timestep", "encoder_hidden_states"), "vae_decoder": ("latent",)}


class Pipeline:
    def __init__(self, bundle: Bundle, config: RuntimeConfig) -> None:
        self.bundle, self.config = bundle, config
        self.tokenizer = load_tokenizer(bundle.root / "tokenizer", max_length=int(bundle.text["max_length"]))
        self.sessions: dict[str, Backend] = {}
        # The decoder chosen among the bundle's (``decoders`` in the manifest); its session is keyed "vae_decoder", so
        # timings and stages keep their names whichever decoder runs.
        self.decoder_name, self.decoder_component, self.decoder_layout = bundle.decoder(config.decoder)
        graphs = {n: (self.decoder_component if n == "vae_decoder" else n) for n in COMPONENTS}
        if self.decoder_layout == "steps":  # the causal decoder's step graphs: the first latent frame's graph too
            graphs[DECODER_FIRST_STEP] = DECODER_FIRST_STEP
        for name in graphs:
            session = create_backend(config.backend, threads=config.threads)
            file = session.model_file(bundle, graphs[name], config.precision)
            try:
                session.load(file)
            except (BackendUnavailableError, BundleError):
                raise
            except Exception as exc:  # the backend's own parse error (a truncated or non-ONNX file, say)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
                raise BundleError(f"{file}: the {config.backend} backend cannot load this {name} graph ({first}); "
                                  "run `turbo-edge verify` on the bundle, or re-export it") from None
            missing = sorted(set(GRAPH_INPUTS.get(name, ("latent",))) - set(session.input_dtypes()))
            if missing:
                raise BundleError(f"{file}: this graph has no input(s) {missing}, so it is not a {name} graph; "
                                  "the manifest names the wrong file: re-export the bundle")
            self.sessions[name] = session
        self._local = threading.local()
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_lock = threading.Lock()

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "ort-cpu", precision: str = "fp32", threads: int = 1, verify: bool = True,
                    decoder: str | None = None) -> Pipeline:
        """``decoder``: one of the bundle's decoders (``Bundle.decoders``); None: its default."""
        config = RuntimeConfig(bundle=str(path), backend=backend, precision=precision, threads=threads, verify=verify, decoder=decoder)
        return cls(load_bundle(path, verify=verify), config)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions = {}

    # ------------------------------------------------------------------ validation

    def check_prompt(self, prompt: str) -> None:
        try:
            check_closed_vocabulary(check_prompt_text(prompt), self.bundle.closed_vocabulary)
        except ValueError as exc:
            raise RuntimeInputError(str(exc)) from exc

    def resolve_steps(self, steps: int | None) -> int:
        spec = self.bundle.sampler
        steps = spec.default_steps if steps is None else int(steps)
        if steps not in spec.supported_steps:
            raise RuntimeInputError(f"steps={steps} is not supported by this bundle; use one of {list(spec.supported_steps)} (re-export to add others)")
        return steps

    def latent_shape(self, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int, int]:
        """(C, F, h, w) for the requested video size, checked against the UNet's and VAE decoder's profiles."""
        lat, vid = self.bundle.latent, self.bundle.video
        factor = int(vid["height"]) // int(lat["height"])
        frames, height, width = frames or int(vid["frames"]), height or int(vid["height"]), width or int(vid["width"])
        if height % factor or width % factor:
            raise RuntimeInputError(f"height and width must be multiples of {factor} (the VAE's factor), got {height}x{width}")
        profile = self.bundle.profile("unet")
        shape = (int(lat["channels"]), self.latent_frames(frames), height // factor, width // factor)
        if "min" in profile and "sample" in profile["min"]:
            lo, hi = profile["min"]["sample"][1:], profile["max"]["sample"][1:]
            if self.bundle.latent.get("causal_first_frame") and lo[1] != hi[1] and not lo[1] <= shape[1] <= hi[1]:  # a DiT range bundle
                raise RuntimeInputError(f"frames {frames} is outside this bundle's clip lengths, {self.frame_range()}; choose one of them "
                                        "or re-export with a wider --min-frames / --max-frames")
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                raise RuntimeInputError(
                    f"frames/height/width {frames}/{height}/{width} (latent {shape}) are outside the bundle's profile "
                    f"(latent min {tuple(lo)}, max {tuple(hi)}); choose a size inside it or re-export with a wider profile"
                )
        return shape

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames a decoder makes of ``latent_frames`` (the manifest's temporal geometry, the same for every decoder of a
        bundle): as many for a per-frame autoencoder, 1 + t (f - 1) for a causal one."""
        return self.bundle.pixel_frames(latent_frames)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip: the manifest's temporal geometry (a causal autoencoder takes 1 + t k frames)."""
        t = int(self.bundle.latent.get("temporal_factor", 1))
        if not self.bundle.latent.get("causal_first_frame"):
            return frames // t if t > 1 else frames
        if frames < 1 or (frames - 1) % t:
            lengths = f" ({self.frame_range()} in this bundle)" if self.frame_range() else ""
            raise RuntimeInputError(f"this bundle's causal autoencoder takes 1 + {t}k frames{lengths}, got {frames}")
        return (frames - 1) // t + 1

    def frame_range(self) -> str:
        """The clip lengths of a bundle exported for a range of them as messages name them ("5 to 13 frames"), else ""."""
        lengths = self.bundle.clip_lengths()
        return f"{lengths[0]} to {lengths[1]} frames" if lengths else ""

    def _max_batch(self, name: str, input_name: str) -> int:
        profile = self.bundle.profile(name)
        return int(profile["max"][input_name][0]) if "max" in profile and input_name in profile["max"] else 1 << 30

    # ------------------------------------------------------------------ model calls

    def _binding(self, name: str, input_shapes: dict[str, tuple[int, ...]], output_shapes: dict[str, tuple[int, ...]]) -> Binding:
        """This thread's binding of ``name`` at these shapes (allocated on first use, reused afterwards)."""
        bindings = self._local.__dict__.setdefault("bindings", {})
        key = (name, tuple(sorted(input_shapes.items())))
        if key not in bindings:
            bindings[key] = self.sessions[name].allocate(input_shapes, output_shapes)
        return bindings[key]

    def _infer(self, name: str, binding: Binding, timings: dict[str, float], stage: str | None = None) -> None:
        start = time.perf_counter()
        self.sessions[name].infer(binding)
        stage = stage or name
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    def encode(self, prompt: str, timings: dict[str, float] | None = None) -> tuple[np.ndarray, bool]:
        """Text-encoder output [L, D] for ``prompt`` (LRU-cached) and whether the prompt was truncated."""
        encoding = self.tokenizer.encode(prompt)
        with self._text_lock:
            cached = self._text_cache.get(prompt)
            if cached is not None:
                self._text_cache.move_to_end(prompt)
                return cached, encoding.truncated
        length, hidden = int(self.bundle.text["max_length"]), int(self.bundle.text["hidden_size"])
        inputs = {"input_ids": (1, length)}
        if encoding.mask is not None:  # an encoder with an attention mask (UMT5)
            inputs["attention_mask"] = (1, length)
        binding = self._binding("text_encoder", inputs, {"last_hidden_state": (1, length, hidden)})
        binding.inputs["input_ids"][0] = encoding.ids
        if encoding.mask is not None:
            binding.inputs["attention_mask"][0] = encoding.mask
        self._infer("text_encoder", binding, timings if timings is not None else {})
        out = binding.outputs["last_hidden_state"][0].astype(np.float32, copy=True)
        with self._text_lock:
            self._text_cache[prompt] = out
            while len(self._text_cache) > self.config.text_cache_size:
                self._text_cache.popitem(last=False)
        return out, encoding.truncated

    def _sample(self, texts: list[np.ndarray], uncond: np.ndarray, shape: tuple[int, ...], steps: int, seed: int,
                guidance: float, first_index: int, timings: dict[str, float], cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        spec = self.bundle.sampler
        b = len(texts)
        rows = 2 * b if spec.uses_cfg else b
        length, hidden = uncond.shape
        inputs = {"sample": (rows, *shape), "timestep": (rows,), "encoder_hidden_states": (rows, length, hidden)}
        if spec.w_embedding_dim is not None:
            inputs["timestep_cond"] = (rows, spec.w_embedding_dim)
        binding = self._binding("unet", inputs, {"out_sample": (rows, *shape)})
        ehs = binding.inputs["encoder_hidden_states"]
        ehs[:] = np.stack([uncond] * b + texts) if spec.uses_cfg else np.stack(texts)
        if spec.w_embedding_dim is not None:
            binding.inputs["timestep_cond"][:] = samplers.guidance_embedding(guidance, spec.w_embedding_dim, rows)
        sample, timestep, out = binding.inputs["sample"], binding.inputs["timestep"], binding.outputs["out_sample"]
        timesteps = spec.timesteps[steps]
        calls = [0]

        def model_fn(x: np.ndarray, t: int) -> np.ndarray:
            if cancelled is not None and cancelled():
                raise GenerationCancelled(f"cancelled after {calls[0]} of {len(timesteps)} denoiser calls")
            calls[0] += 1
            sample[:b] = x
            if spec.uses_cfg:
                sample[b:] = x
            timestep.fill(t)
            self._infer("unet", binding, timings)
            return out

        def noise_fn(step: int) -> np.ndarray:
            return np.stack([normal(seed, stream_id(first_index + i, step), shape) for i in range(b)])

        sample_fn, options = samplers.SAMPLERS[spec.kind]
        return sample_fn(model_fn, noise_fn(0), timesteps, noise_fn=noise_fn, **options(spec, timesteps, guidance))

    def decode(self, latents: np.ndarray, timings: dict[str, float] | None = None) -> np.ndarray:
        """Latents [B, C, F, h, w] (as the UNet sees them) -> uint8 frames [B, F, H, W, 3], in profile-sized chunks."""
        if self.decoder_layout == "clip":  # a decoder variant (tiny, pruned): whole clips per call
            return self._decode_clips(latents, timings if timings is not None else {})
        if self.decoder_layout == "video":  # a causal video autoencoder's own decoder (export.dit): whole clips per call
            return self._decode_causal(latents, timings)
        if self.decoder_layout == "steps":  # the same decoder as step graphs, its cache explicit: any clip length
            return self._decode_steps(latents, timings if timings is not None else {})
        b, c, f, h, w = latents.shape
        flat = np.ascontiguousarray(latents.transpose(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        factor = int(self.bundle.video["height"]) // int(self.bundle.latent["height"])
        chunk = min(len(flat), self._max_batch("vae_decoder", "latent"))
        images = np.empty((b * f, 3, h * factor, w * factor), dtype=np.float32)
        for start in range(0, len(flat), chunk):
            part = flat[start : start + chunk]
            binding = self._binding("vae_decoder", {"latent": part.shape}, {"image": (len(part), 3, h * factor, w * factor)})
            binding.inputs["latent"][:] = part
            self._infer("vae_decoder", binding, timings if timings is not None else {})
            images[start : start + len(part)] = binding.outputs["image"]
        # Same rounding as core.sampling.decode: clamp to [-1, 1], scale to [0, 255], round half to even.
        np.clip(images, -1.0, 1.0, out=images)
        pixels = np.rint((images + 1.0) * 127.5).astype(np.uint8)
        return pixels.reshape(b, f, 3, h * factor, w * factor).transpose(0, 1, 3, 4, 2)

    def _decode_causal(self, latents: np.ndarray, timings: dict[str, float] | None) -> np.ndarray:
        """A whole-clip decoder (a causal video autoencoder): latents [B, C, f, h, w] -> uint8 [B, F, H, W, 3]."""
        b, frames = latents.shape[0], self.pixel_frames(latents.shape[2])
        factor = int(self.bundle.video["height"]) // int(self.bundle.latent["height"])
        h, w = latents.shape[3] * factor, latents.shape[4] * factor
        chunk = min(b, self._max_batch("vae_decoder", "latent"))
        images = np.empty((b, 3, frames, h, w), dtype=np.float32)
        for start in range(0, b, chunk):
            part = latents[start : start + chunk]
            binding = self._binding("vae_decoder", {"latent": part.shape}, {"video": (len(part), 3, frames, h, w)})  # export.dit's names
            binding.inputs["latent"][:] = part
            self._infer("vae_decoder", binding, timings if timings is not None else {})
            images[start : start + len(part)] = binding.outputs["video"]
        np.clip(images, -1.0, 1.0, out=images)
        return np.rint((images + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 4, 1)

    def cache_shapes(self, b: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
        """The step decoder's cache inputs at batch ``b`` and latent size h x w: each [b, C, 2, h s, w s], C and the
        scale s read from the manifest's profile (its opt shapes)."""
        opt = self.bundle.profile("vae_decoder")["opt"]
        lh, lw = opt["latent"][3:]
        return {name: (b, c, t, h * (ch // lh), w * (cw // lw)) for name, (_, c, t, ch, cw) in opt.items() if name != "latent"}

    def _decode_steps(self, latents: np.ndarray, timings: dict[str, float]) -> np.ndarray:
        """The "steps" layout: latent frame 0 through ``vae_decoder_first`` (one pixel frame), then each later one
        through ``vae_decoder`` (t pixel frames) with the cache the call before returned (``next_cache_i`` ->
        ``cache_i``); uint8 [B, F, H, W, 3] as ``_decode_causal``."""
        b, c, f, h, w = latents.shape
        t, frames = int(self.bundle.latent.get("temporal_factor", 1)), self.pixel_frames(f)
        factor = int(self.bundle.video["height"]) // int(self.bundle.latent["height"])
        chunk = min(b, self._max_batch("vae_decoder", "latent"))
        images = np.empty((b, 3, frames, h * factor, w * factor), dtype=np.float32)
        for start in range(0, b, chunk):
            part = latents[start : start + chunk]
            n = len(part)
            caches = self.cache_shapes(n, h, w)
            nxt = {"next_" + k: v for k, v in caches.items()}
            first = self._binding(DECODER_FIRST_STEP, {"latent": (n, c, 1, h, w)}, {"video": (n, 3, 1, h * factor, w * factor), **nxt})
            step = self._binding("vae_decoder", {"latent": (n, c, 1, h, w), **caches}, {"video": (n, 3, t, h * factor, w * factor), **nxt})
            first.inputs["latent"][:] = part[:, :, :1]
            self._infer(DECODER_FIRST_STEP, first, timings, stage="vae_decoder")
            images[start : start + n, :, :1] = first.outputs["video"]
            carried = first.outputs
            for k in range(1, f):
                step.inputs["latent"][:] = part[:, :, k : k + 1]
                for name in caches:
                    step.inputs[name][:] = carried["next_" + name]
                self._infer("vae_decoder", step, timings)
                images[start : start + n, :, 1 + t * (k - 1) : 1 + t * k] = step.outputs["video"]
                carried = step.outputs
        np.clip(images, -1.0, 1.0, out=images)  # the rounding of decode()
        return np.rint((images + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 4, 1)

    def _decode_clips(self, latents: np.ndarray, timings: dict[str, float]) -> np.ndarray:
        """A "clip" layout decoder (a variant: latent [B, C, f, h, w] -> image [B, F, 3, H, W], F the full decoder's frame
        count: ``pixel_frames``), whole clips per call."""
        b, c, f, h, w = latents.shape
        frames = self.pixel_frames(f)
        factor = int(self.bundle.video["height"]) // int(self.bundle.latent["height"])
        chunk = min(b, self._max_batch(self.decoder_component, "latent"))
        images = np.empty((b, frames, 3, h * factor, w * factor), dtype=np.float32)
        for start in range(0, b, chunk):
            part = latents[start : start + chunk]
            binding = self._binding("vae_decoder", {"latent": part.shape}, {"image": (len(part), frames, 3, h * factor, w * factor)})
            binding.inputs["latent"][:] = part
            self._infer("vae_decoder", binding, timings)
            images[start : start + len(part)] = binding.outputs["image"]
        np.clip(images, -1.0, 1.0, out=images)  # the rounding of decode()
        return np.rint((images + 1.0) * 127.5).astype(np.uint8).transpose(0, 1, 3, 4, 2)

    # ------------------------------------------------------------------ public entry points

    def run(self, prompts: list[str], steps: int | None = None, seed: int = 0, guidance: float | None = None,
            frames: int | None = None, height: int | None = None, width: int | None = None,
            cancelled: Callable[[], bool] | None = None) -> GenerationResult:
        """Clips for ``prompts``; prompt ``i`` draws its noise from streams ``stream_id(i, step)`` of ``seed``.
        ``cancelled`` is asked before every denoiser call; where it returns True the run stops there with
        ``GenerationCancelled`` (a server frees its instance for the next request within one call, not one video)."""
        if not prompts:
            raise RuntimeInputError("no prompts given")
        for p in prompts:
            self.check_prompt(p)
        try:
            seed, guidance = check_seed(seed), check_guidance(guidance)
        except ValueError as exc:
            raise RuntimeInputError(str(exc)) from exc
        spec = self.bundle.sampler
        steps = self.resolve_steps(steps)
        if guidance is not None and not spec.uses_cfg and spec.w_embedding_dim is None:
            raise RuntimeInputError("this bundle's student has its guidance distilled in (no guidance input); omit guidance")
        guidance = spec.guidance if guidance is None else float(guidance)
        shape = self.latent_shape(frames, height, width)
        timings: dict[str, float] = {}
        encoded = [self.encode(p, timings) for p in prompts]
        uncond = self.encode("", timings)[0] if spec.uses_cfg else encoded[0][0]
        rows_per_prompt = 2 if spec.uses_cfg else 1
        chunk = max(1, self._max_batch("unet", "sample") // rows_per_prompt)
        clips = []
        for start in range(0, len(prompts), chunk):
            texts = [e[0] for e in encoded[start : start + chunk]]
            latents = self._sample(texts, uncond, shape, steps, seed, guidance, start, timings, cancelled)
            clips.append(self.decode(latents, timings))
        truncated = [e[1] for e in encoded]
        for p, t in zip(prompts, truncated):
            if t:
                warnings.warn(f"prompt {p!r} is longer than the text encoder's {self.tokenizer.max_length} tokens; its tail was dropped",
                              PromptTruncatedWarning, stacklevel=3)
        return GenerationResult(np.concatenate(clips), truncated, steps, timings)

    def generate(self, prompt: str, steps: int | None = None, seed: int = 0, guidance: float | None = None,
                 frames: int | None = None, height: int | None = None, width: int | None = None,
                 cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        """One clip, uint8 [F, H, W, 3]. A truncated prompt raises ``PromptTruncatedWarning`` as a warning."""
        return self.run([prompt], steps, seed, guidance, frames, height, width, cancelled).frames[0]

    def generate_batch(self, prompts: list[str], steps: int | None = None, seed: int = 0, guidance: float | None = None) -> np.ndarray:
        """Clips uint8 [B, F, H, W, 3]; prompt ``i`` uses noise streams of index ``i``."""
        return self.run(prompts, steps, seed, guidance).frames
