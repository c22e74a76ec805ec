"""A DiT bundle of hand-built graphs in ``export.dit``'s layout (UMT5-style masked text encoder, a velocity network, a
whole-clip causal decoder), a T5-style Unigram tokenizer written by the ``tokenizers`` package, and the chain in numpy:
no torch, milliseconds. Shared by the runtime, C++ and serve tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from synthetic_bundles import const, save_graph

from turbo_edge.spec import param
from turbo_edge.spec.noise import normal, stream_id
from turbo_edge.spec.sampler import SamplerSpec, flow_tables


def _velocity_graph(frames: int | str = 3) -> onnx.GraphProto:
    """out = tanh(0.9 x + 0.5 mean(text) + 1e-3 t), per sample: depends on every input, cheap (``frames``: its latent
    frames, an axis name for a bundle with a range of clip lengths)."""
    nodes = [helper.make_node("Mul", ["sample", "k_x"], ["a"]),
             helper.make_node("ReduceMean", ["encoder_hidden_states"], ["text_mean"], axes=[1, 2], keepdims=0),
             helper.make_node("Mul", ["text_mean", "k_text"], ["text_term"]), helper.make_node("Mul", ["timestep", "k_t"], ["t_term"]),
             helper.make_node("Add", ["text_term", "t_term"], ["per_sample"]), helper.make_node("Reshape", ["per_sample", "shape5"], ["bias"]),
             helper.make_node("Add", ["a", "bias"], ["pre"]), helper.make_node("Tanh", ["pre"], ["out_sample"])]
    return helper.make_graph(nodes, "unet",
                             [helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", C, frames, LH, LW]),
                              helper.make_tensor_value_info("timestep", TensorProto.FLOAT, ["batch"]),
                              helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, ["batch", LENGTH, HIDDEN])],
                             [helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, ["batch", C, frames, LH, LW])],
                             [const("k_x", np.float32(0.9)), const("k_text", np.float32(0.5)), const("k_t", np.float32(1e-3)),
                              const("shape5", np.array([-1, 1, 1, 1, 1], dtype=np.int64))])


C, LF, LH, LW, FACTOR, T, LENGTH, HIDDEN, VOCAB = 4, 3, 2, 2, 4, 4, 8, 8, 44
FRAMES = 1 + T * (LF - 1)
WORDS = {"a": 3, "red": 4, "circle": 5, "left": 6}


def dit_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -2.0) for w in WORDS] + [("▁", -5.0)]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    path.mkdir(parents=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": LENGTH, "tokenizer_class": "T5Tokenizer"}))
    return path


def _text_graph(table: np.ndarray) -> onnx.GraphProto:
    """tanh(table[ids]) * mask: UMT5's contract (zero past the prompt) in three ops."""
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["emb"]), helper.make_node("Tanh", ["emb"], ["t"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]), helper.make_node("Mul", ["t", "m3"], ["last_hidden_state"])]
    return helper.make_graph(nodes, "text_encoder",
                             [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", LENGTH]),
                              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", LENGTH])],
                             [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", LENGTH, HIDDEN])],
                             [const("table", table), const("axis2", np.array([2], dtype=np.int64))])


def _vae_graph(weight: np.ndarray) -> onnx.GraphProto:
    """A causal whole-clip decoder: per latent frame a 1x1 conv + depth-to-space, latent frame 0 -> 1 frame and every
    later one -> T frames (a Gather over time), tanh; [B, C, f, h, w] -> [B, 3, 1 + T(f - 1), H, W]."""
    index = np.array([0] + [k for k in range(1, LF) for _ in range(T)], dtype=np.int64)
    nodes = [helper.make_node("Transpose", ["latent"], ["bf"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["bf", "flat"], ["x"]), helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=FACTOR, mode="DCR"),
             helper.make_node("Reshape", ["d", "clip"], ["y"]), helper.make_node("Gather", ["y", "index"], ["z"], axis=1),
             helper.make_node("Transpose", ["z"], ["zt"], perm=[0, 2, 1, 3, 4]), helper.make_node("Tanh", ["zt"], ["video"])]
    return helper.make_graph(nodes, "vae_decoder",
                             [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", C, LF, LH, LW])],
                             [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 3, FRAMES, LH * FACTOR, LW * FACTOR])],
                             [const("w", weight), const("index", index), const("flat", np.array([-1, C, LH, LW], dtype=np.int64)),
                              const("clip", np.array([-1, LF, 3, LH * FACTOR, LW * FACTOR], dtype=np.int64))])


def _tiny_graph(weight: np.ndarray, ramp: np.ndarray) -> onnx.GraphProto:
    """A tiny decoder variant in the "clip" layout with the causal time upsampling: per latent frame a 1x1 conv +
    depth-to-space, latent frame 0 -> 1 frame and every later one -> T frames, plus ``ramp[j]`` on output frame j (so
    the T frames of one latent frame differ and their order shows), tanh; [B, C, f, h, w] -> [B, 1 + T(f - 1), 3, H, W]."""
    index = np.array([0] + [k for k in range(1, LF) for _ in range(T)], dtype=np.int64)
    nodes = [helper.make_node("Transpose", ["latent"], ["bf"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["bf", "flat"], ["x"]), helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=FACTOR, mode="DCR"),
             helper.make_node("Reshape", ["d", "clip"], ["y"]), helper.make_node("Gather", ["y", "index"], ["z"], axis=1),
             helper.make_node("Add", ["z", "ramp"], ["r"]), helper.make_node("Tanh", ["r"], ["image"])]
    return helper.make_graph(nodes, "vae_decoder_tiny",
                             [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", C, LF, LH, LW])],
                             [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", FRAMES, 3, LH * FACTOR, LW * FACTOR])],
                             [const("w", weight), const("index", index), const("ramp", ramp.reshape(1, FRAMES, 1, 1, 1)),
                              const("flat", np.array([-1, C, LH, LW], dtype=np.int64)),
                              const("clip", np.array([-1, LF, 3, LH * FACTOR, LW * FACTOR], dtype=np.int64))])


def make_dit_bundle(out: Path, sampler: SamplerSpec, seed: int = 0, decoders: tuple[str, ...] = ()) -> tuple[Path, dict[str, np.ndarray]]:
    """A DiT bundle of hand-built graphs and the weights the numpy references take. ``decoders`` (e.g. ("full", "tiny"),
    the first the default): a ``decoders`` section as export writes it for a DiT (the full decoder's layout "video",
    a tiny variant ``_tiny_graph`` in the "clip" layout); () leaves the section out, as a bundle with one decoder."""
    rng = np.random.default_rng(seed)
    weights = {"table": rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32),
               "w": (rng.standard_normal((3 * FACTOR * FACTOR, C, 1, 1)) * 0.7).astype(np.float32)}
    if "tiny" in decoders:
        weights["tiny_w"] = (rng.standard_normal((3 * FACTOR * FACTOR, C, 1, 1)) * 0.5).astype(np.float32)
        weights["tiny_ramp"] = np.linspace(-0.6, 0.6, FRAMES).astype(np.float32)
    out.mkdir(parents=True)
    dit_tokenizer(out / "tokenizer")
    save_graph(_text_graph(weights["table"]), out / "text_encoder.onnx")
    save_graph(_velocity_graph(), out / "unet.onnx")
    save_graph(_vae_graph(weights["w"]), out / "vae_decoder.onnx")
    if "tiny" in decoders:
        save_graph(_tiny_graph(weights["tiny_w"], weights["tiny_ramp"]), out / "vae_decoder_tiny.onnx")
    sample = [C, LF, LH, LW]
    manifest = {
        "schema_version": 1, "turbo_edge_version": "test", "created": "2026-01-01T00:00:00+00:00",
        "source": {"model": "synthetic-dit", "kind": "teacher", "config_hash": "0"},
        "sampler": sampler.to_dict(),
        "latent": {"channels": C, "frames": LF, "height": LH, "width": LW, "autoencoder": "wan_causal", "spatial_factor": FACTOR,
                   "temporal_factor": T, "causal_first_frame": True, "latents_mean": [0.0] * C, "latents_std": [1.0] * C},
        "video": {"frames": FRAMES, "height": LH * FACTOR, "width": LW * FACTOR, "fps": 8},
        "text": {"max_length": LENGTH, "hidden_size": HIDDEN, "closed_vocabulary": None, "attention_mask": True},
        "components": {
            "text_encoder": {"files": {"fp32": "text_encoder.onnx"},
                             "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", LENGTH]},
                                        {"name": "attention_mask", "dtype": "int64", "shape": ["batch", LENGTH]}],
                             "profile": {p: {"input_ids": [b, LENGTH], "attention_mask": [b, LENGTH]} for p, b in (("min", 1), ("opt", 2), ("max", 4))}},
            "unet": {"files": {"fp32": "unet.onnx"}, "inputs": [{"name": "sample", "dtype": "float32", "shape": ["batch", *sample]}],
                     "profile": {p: {"sample": [b, *sample]} for p, b in (("min", 1), ("opt", 2), ("max", 4))}},
            "vae_decoder": {"files": {"fp32": "vae_decoder.onnx"}, "inputs": [{"name": "latent", "dtype": "float32", "shape": ["batch", *sample]}],
                            "profile": {p: {"latent": [b, *sample]} for p, b in (("min", 1), ("opt", 1), ("max", 2))}},
        },
        "parity": {},
    }
    if decoders:
        variants = {"full": {"component": "vae_decoder", "layout": "video"}}
        if "tiny" in decoders:
            manifest["components"]["vae_decoder_tiny"] = {
                "files": {"fp32": "vae_decoder_tiny.onnx"}, "inputs": [{"name": "latent", "dtype": "float32", "shape": ["batch", *sample]}],
                "outputs": [{"name": "image", "dtype": "float32", "shape": ["batch", FRAMES, 3, LH * FACTOR, LW * FACTOR]}],
                "profile": {p: {"latent": [b, *sample]} for p, b in (("min", 1), ("opt", 1), ("max", 2))}}
            variants["tiny"] = {"component": "vae_decoder_tiny", "layout": "clip", "class": "TinyDecoder"}
        if "full" not in decoders:
            del manifest["components"]["vae_decoder"], variants["full"]
            (out / "vae_decoder.onnx").unlink()
        manifest["decoders"] = {"default": decoders[0], "variants": variants}
    manifest["files"] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out, weights


# A bundle for a range of clip lengths (export --min-frames 5 --max-frames 13): latent frames 2 to 4, the causal decoder
# as export.dit's two step graphs with one cache tensor [B, C, 2, h, w] (the last two latent frames the decoder saw).
RANGE_LF = (2, 3, 4)


def _step_graph(weight: np.ndarray, first: bool) -> onnx.GraphProto:
    """A causal decoder step in export.dit's "steps" layout. First (latent frame 0): s = x, one frame; next_cache_0 =
    [0, x]. Later: s = x + 0.5 c[1] - 0.25 c[0] (the cache's frames, so their order shows), T frames (+ ``ramp``);
    next_cache_0 = [c[1], x]. Each frame: a 1x1 conv of s, depth-to-space, tanh."""
    frames = 1 if first else T
    latent = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", C, 1, LH, LW])
    cache = helper.make_tensor_value_info("cache_0", TensorProto.FLOAT, ["batch", C, 2, LH, LW])
    outs = [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 3, frames, LH * FACTOR, LW * FACTOR]),
            helper.make_tensor_value_info("next_cache_0", TensorProto.FLOAT, ["batch", C, 2, LH, LW])]
    inits = [const("w", weight), const("flat", np.array([-1, C, LH, LW], dtype=np.int64)), const("axis2", np.array([2], dtype=np.int64))]
    if first:
        nodes = [helper.make_node("Identity", ["latent"], ["s"]), helper.make_node("Mul", ["latent", "zero"], ["z"]),
                 helper.make_node("Concat", ["z", "latent"], ["next_cache_0"], axis=2)]
        inits.append(const("zero", np.float32(0.0)))
    else:
        nodes = [helper.make_node("Slice", ["cache_0", "i0", "i1", "axis2"], ["c0"]), helper.make_node("Slice", ["cache_0", "i1", "i2", "axis2"], ["c1"]),
                 helper.make_node("Mul", ["c1", "half"], ["a"]), helper.make_node("Mul", ["c0", "quarter"], ["b"]),
                 helper.make_node("Add", ["latent", "a"], ["sa"]), helper.make_node("Sub", ["sa", "b"], ["s"]),
                 helper.make_node("Concat", ["c1", "latent"], ["next_cache_0"], axis=2)]
        inits += [const(n, np.array([v], dtype=np.int64)) for n, v in (("i0", 0), ("i1", 1), ("i2", 2))]
        inits += [const("half", np.float32(0.5)), const("quarter", np.float32(0.25)),
                  const("ramp", np.linspace(-0.3, 0.3, T).astype(np.float32).reshape(1, 1, T, 1, 1))]
    nodes += [helper.make_node("Reshape", ["s", "flat"], ["x"]), helper.make_node("Conv", ["x", "w"], ["c"]),
              helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=FACTOR, mode="DCR"), helper.make_node("Unsqueeze", ["d", "axis2"], ["u"])]
    nodes += [helper.make_node("Tanh", ["u"], ["video"])] if first else [helper.make_node("Add", ["u", "ramp"], ["r"]), helper.make_node("Tanh", ["r"], ["video"])]
    return helper.make_graph(nodes, "vae_decoder_first" if first else "vae_decoder", [latent] if first else [latent, cache], outs, inits)


def make_dit_range_bundle(out: Path, sampler: SamplerSpec, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """``make_dit_bundle``'s graphs for clip lengths 5 to 13 (latent frames ``RANGE_LF``, the default 9): the velocity
    network dynamic in frames and the decoder as step graphs (schema 2, the full decoder's layout "steps")."""
    path, weights = make_dit_bundle(out, sampler, seed)
    save_graph(_velocity_graph("latent_frames"), out / "unet.onnx")
    (out / "vae_decoder.onnx").unlink()
    save_graph(_step_graph(weights["w"], True), out / "vae_decoder_first.onnx")
    save_graph(_step_graph(weights["w"], False), out / "vae_decoder.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = 2
    comps = manifest["components"]
    comps["unet"]["inputs"][0]["shape"] = ["batch", C, "latent_frames", LH, LW]
    comps["unet"]["profile"] = {p: {"sample": [b, C, f, LH, LW]} for p, b, f in (("min", 1, RANGE_LF[0]), ("opt", 2, RANGE_LF[1]), ("max", 4, RANGE_LF[2]))}
    latent, cache = ["batch", C, 1, LH, LW], ["batch", C, 2, LH, LW]
    video = lambda n: {"name": "video", "dtype": "float32", "shape": ["batch", 3, n, LH * FACTOR, LW * FACTOR]}  # noqa: E731
    nxt = {"name": "next_cache_0", "dtype": "float32", "shape": cache}
    profile = lambda *names: {p: {n: [b, C, 1 if n == "latent" else 2, LH, LW] for n in names} for p, b in (("min", 1), ("opt", 1), ("max", 2))}  # noqa: E731
    comps["vae_decoder_first"] = {"files": {"fp32": "vae_decoder_first.onnx"}, "inputs": [{"name": "latent", "dtype": "float32", "shape": latent}],
                                  "outputs": [video(1), nxt], "profile": profile("latent")}
    comps["vae_decoder"] = {"files": {"fp32": "vae_decoder.onnx"},
                            "inputs": [{"name": "latent", "dtype": "float32", "shape": latent}, {"name": "cache_0", "dtype": "float32", "shape": cache}],
                            "outputs": [video(T), nxt], "profile": profile("latent", "cache_0")}
    manifest["files"] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return path, weights


def reference_range_clip(weights: dict[str, np.ndarray], prompt_ids: list[int], steps: int, seed: int, guidance: float, frames: int) -> np.ndarray:
    """``reference_clip`` at ``frames`` (1 + T k) decoded by ``_step_graph``'s function, from the contract."""
    f = 1 + (frames - 1) // T
    x = _sample_reference(weights, prompt_ids, steps, seed, guidance, f)
    w = weights["w"][:, :, 0, 0]
    ramp = np.linspace(-0.3, 0.3, T).astype(np.float32)

    def image(s: np.ndarray) -> np.ndarray:  # [C, h, w] -> [3, H, W]: the 1x1 conv, depth-to-space (DCR)
        return np.einsum("oc,chw->ohw", w, s).reshape(FACTOR, FACTOR, 3, LH, LW).transpose(2, 3, 0, 4, 1).reshape(3, LH * FACTOR, LW * FACTOR)

    video, cache = [np.tanh(image(x[:, 0]))], [np.zeros_like(x[:, 0]), x[:, 0]]
    for k in range(1, f):
        img = image(x[:, k] + 0.5 * cache[1] - 0.25 * cache[0])
        video += [np.tanh(img + r) for r in ramp]
        cache = [cache[1], x[:, k]]
    return np.rint((np.clip(np.stack(video), -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def teacher_contract() -> SamplerSpec:
    return SamplerSpec.flow_euler_cfg({"num_train_timesteps": 1000, "shift": 5.0}, default_steps=3, supported_steps=(2, 3), guidance=4.0)


def reference_clip(weights: dict[str, np.ndarray], prompt_ids: list[int], steps: int, seed: int, guidance: float, decoder: str = "full") -> np.ndarray:
    """The DiT chain in numpy, written from the contract (not from the runtime's code)."""
    return _decode_reference(weights, _sample_reference(weights, prompt_ids, steps, seed, guidance, LF), decoder)


def _sample_reference(weights: dict[str, np.ndarray], prompt_ids: list[int], steps: int, seed: int, guidance: float, frames: int) -> np.ndarray:
    """Flow Euler + CFG over latents [C, frames, h, w], in numpy."""
    def text(ids: list[int]) -> np.ndarray:
        mask = np.zeros(LENGTH, np.float32)
        mask[: len(ids)] = 1
        padded = ids + [0] * (LENGTH - len(ids))
        return np.tanh(weights["table"][padded]) * mask[:, None]

    def velocity(x: np.ndarray, t: float, e: np.ndarray) -> np.ndarray:  # _velocity_graph's function
        return np.tanh(0.9 * x + 0.5 * e.mean() + 1e-3 * t)

    cond, uncond = text(prompt_ids), text([1])
    timesteps, sigmas = flow_tables(steps, 5.0, 1000)
    x = normal(seed, 0, (C, frames, LH, LW)).astype(np.float64)
    for i, t in enumerate(timesteps):
        vu, vc = velocity(x, t, uncond), velocity(x, t, cond)
        x = x + (sigmas[i + 1] - sigmas[i]) * (vu + guidance * (vc - vu))
    return x


SHIFT = 5.0


def student_contract() -> SamplerSpec:
    """A flow consistency student's contract as the distiller writes it (main's ``SamplerSpec.consistency`` for a flow
    teacher): integer timestep indices of the flow schedule from a 50-step solver grid, the shift, no CFG."""
    steps = (1, 2, 4)
    return SamplerSpec.from_dict({
        "kind": "consistency", "prediction_type": "flow_prediction", "num_train_timesteps": 1000, "flow_shift": SHIFT,
        "default_steps": 2, "supported_steps": list(steps), "origin_steps": 50, "guidance": 4.0, "uses_cfg": False, "w_embedding_dim": None,
        "timesteps": {str(n): [int(t) for t in param.consistency_timesteps(1000, 50, n)] for n in steps},
        "timestep_scaling": 10.0, "sigma_data": 0.5})


def reference_student_clip(weights: dict[str, np.ndarray], prompt_ids: list[int], steps: int, seed: int) -> np.ndarray:
    """Multistep consistency sampling on the flow schedule, in numpy from the definitions (not the runtime's code):
    sigma_t = shift((t + 1) / N), the network fed sigma_t N, x0 = x - sigma v, the LCM boundary condition on the index,
    re-noising x = (1 - sigma') x0 + sigma' eps with fresh noise of draw i + 1."""
    mask = np.zeros(LENGTH, np.float32)
    mask[: len(prompt_ids)] = 1
    text = np.tanh(weights["table"][prompt_ids + [0] * (LENGTH - len(prompt_ids))]) * mask[:, None]
    timesteps = param.consistency_timesteps(1000, 50, steps)
    x = normal(seed, 0, (C, LF, LH, LW)).astype(np.float64)
    for i, t in enumerate(timesteps):
        s = (t + 1) / 1000
        sigma = SHIFT * s / (1 + (SHIFT - 1) * s)
        v = np.tanh(0.9 * x + 0.5 * text.mean() + 1e-3 * float(np.float32(sigma * 1000)))
        tt = 10.0 * t
        x = 0.25 / (tt * tt + 0.25) * x + tt / np.sqrt(tt * tt + 0.25) * (x - sigma * v)
        if i + 1 < len(timesteps):
            s = (timesteps[i + 1] + 1) / 1000
            sigma = SHIFT * s / (1 + (SHIFT - 1) * s)
            x = (1 - sigma) * x + sigma * normal(seed, stream_id(0, i + 1), x.shape)
    return _decode_reference(weights, x)


def _decode_reference(weights: dict[str, np.ndarray], x: np.ndarray, decoder: str = "full") -> np.ndarray:
    """The clip's uint8 frames [F, H, W, 3] from latents [C, f, h, w] by the full decoder's function or the tiny one's."""
    w, ramp = (weights["w"], np.zeros(FRAMES)) if decoder == "full" else (weights["tiny_w"], weights["tiny_ramp"])
    frames = []
    for k in range(LF):  # per latent frame: 1x1 conv, depth-to-space (DCR), then 1 or T copies
        conv = np.einsum("oc,chw->ohw", w[:, :, 0, 0], x[:, k])
        img = conv.reshape(FACTOR, FACTOR, 3, LH, LW).transpose(2, 3, 0, 4, 1).reshape(3, LH * FACTOR, LW * FACTOR)
        frames += [img] * (1 if k == 0 else T)
    video = np.tanh(np.stack(frames) + ramp[:, None, None, None])  # [F, 3, H, W]
    return np.rint((np.clip(video, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
