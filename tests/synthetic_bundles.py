"""A complete bundle (manifest schema 1) of tiny hand-built ONNX graphs (onnx.helper, no torch, milliseconds) with the
export stage's exact I/O names and dtypes: pipeline logic, errors, threads, the C++ host and serving are tested
without waiting for an export. Shared by the runtime, serve and bench tests (``tests/`` is on the import path);
``dit_bundles`` builds the DiT family's counterpart with the same graph helpers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizer_cases import transformers_json_tokenizer

from turbo_edge.core import world
from turbo_edge.spec import param
from turbo_edge.spec.tokenizer_files import write_tokenizer

SYN = {"channels": 4, "frames": 3, "lh": 4, "lw": 4, "factor": 2, "length": 8, "hidden": 8, "w_dim": 6}


def tampered_copy(bundle: Path, dst: Path, name: str, flip: int = 0xFF) -> Path:
    """A copy of ``bundle`` at ``dst`` with one byte of its member ``name`` changed (the middle one, XOR ``flip``): what
    every reader must refuse, naming the file."""
    import shutil

    shutil.copytree(bundle, dst)
    data = bytearray((dst / name).read_bytes())
    data[len(data) // 2] ^= flip
    (dst / name).write_bytes(bytes(data))
    return dst


def save_graph(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def text_encoder_graph(vocab_size: int, length: int, hidden: int, rng: np.random.Generator) -> onnx.GraphProto:
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["emb"]), helper.make_node("Tanh", ["emb"], ["last_hidden_state"])]
    return helper.make_graph(
        nodes, "text_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", length])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", length, hidden])],
        [const("table", rng.standard_normal((vocab_size, hidden)).astype(np.float32))],
    )


def unet_graph(channels: int, length: int, hidden: int, w_dim: int | None) -> onnx.GraphProto:
    """out = tanh(0.9 x + 0.5 mean(text) + 1e-3 t [+ 0.3 mean(w_emb)]): depends on every input, cheap."""
    nodes = [
        helper.make_node("Mul", ["sample", "k_x"], ["a"]),
        helper.make_node("ReduceMean", ["encoder_hidden_states"], ["text_mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["text_mean", "k_text"], ["text_term"]),
        helper.make_node("Mul", ["timestep", "k_t"], ["t_term"]),
        helper.make_node("Add", ["text_term", "t_term"], ["per_sample"]),
    ]
    inputs = [
        helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", channels, "frames", "lh", "lw"]),
        helper.make_tensor_value_info("timestep", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, ["batch", length, hidden]),
    ]
    last = "per_sample"
    if w_dim:
        inputs.append(helper.make_tensor_value_info("timestep_cond", TensorProto.FLOAT, ["batch", w_dim]))
        nodes += [helper.make_node("ReduceMean", ["timestep_cond"], ["w_mean"], axes=[1], keepdims=0),
                  helper.make_node("Mul", ["w_mean", "k_w"], ["w_term"]),
                  helper.make_node("Add", ["per_sample", "w_term"], ["per_sample_w"])]
        last = "per_sample_w"
    nodes += [
        helper.make_node("Reshape", [last, "shape5"], ["bias"]),
        helper.make_node("Add", ["a", "bias"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["out_sample"]),
    ]
    inits = [const("k_x", np.float32(0.9)), const("k_text", np.float32(0.5)), const("k_t", np.float32(1e-3)),
             const("k_w", np.float32(0.3)), const("shape5", np.array([-1, 1, 1, 1, 1], dtype=np.int64))]
    return helper.make_graph(nodes, "unet", inputs,
                             [helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, ["batch", channels, "frames", "lh", "lw"])], inits)


def vae_graph(channels: int, factor: int, rng: np.random.Generator) -> onnx.GraphProto:
    """1x1 conv to 3*factor^2 channels, depth-to-space, tanh: a real upsampling decoder in three ops."""
    weight = (rng.standard_normal((3 * factor * factor, channels, 1, 1)) * 0.7).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["latent", "w"], ["c"]),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=factor, mode="DCR"),
        helper.make_node("Tanh", ["d"], ["image"]),
    ]
    return helper.make_graph(
        nodes, "vae_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["n", channels, "lh", "lw"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [const("w", weight)],
    )


def clip_decoder_graph(channels: int, factor: int, rng: np.random.Generator) -> onnx.GraphProto:
    """A decoder variant in the "clip" layout: latent [B, C, F, h, w] -> image [B, F, 3, H, W]. Each frame is mixed with
    the clip's mean over frames first (0.4 x), so a runtime that called it frame by frame would give other frames."""
    weight = (rng.standard_normal((3 * factor * factor, channels, 1, 1)) * 0.6).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["latent"], ["clip_mean"], axes=[2], keepdims=1),
        helper.make_node("Mul", ["clip_mean", "k_mix"], ["mix"]),
        helper.make_node("Add", ["latent", "mix"], ["mixed"]),
        helper.make_node("Shape", ["latent"], ["lshape"]),
        helper.make_node("Transpose", ["mixed"], ["bfchw"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["bfchw", "flat4"], ["flat"]),
        helper.make_node("Conv", ["flat", "w"], ["c"]),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=factor, mode="DCR"),
        helper.make_node("Tanh", ["d"], ["t"]),
        helper.make_node("Gather", ["lshape", "i_bf"], ["bf"]),  # [B, F]
        helper.make_node("Shape", ["t"], ["tshape"]),
        helper.make_node("Slice", ["tshape", "s1", "s4"], ["chw"]),  # [3, H, W]
        helper.make_node("Concat", ["bf", "chw"], ["shape5"], axis=0),
        helper.make_node("Reshape", ["t", "shape5"], ["image"]),
    ]
    inits = [const("w", weight), const("k_mix", np.float32(0.4)), const("flat4", np.array([-1, channels, 0, 0], dtype=np.int64)),
             const("i_bf", np.array([0, 2], dtype=np.int64)), const("s1", np.array([1], dtype=np.int64)), const("s4", np.array([4], dtype=np.int64))]
    return helper.make_graph(
        nodes, "vae_decoder_tiny",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["b", channels, "f", "lh", "lw"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", "f", 3, "h", "w"])], inits)


def make_synthetic_bundle(out: Path, kind: str = "ddim_cfg", seed: int = 0, max_batch: int = 2, tokenizer_json: bool = False,
                          decoders: tuple[str, ...] = ()) -> Path:
    """A complete bundle (manifest schema 1) of tiny hand-built graphs; ``kind`` is the sampler.

    Its tokenizer is vocab.json + merges.txt, or with ``tokenizer_json`` the same vocabulary as transformers 5 saves
    it (tokenizer.json only; needs transformers). ``decoders`` (e.g. ("full", "tiny"), the first the default): a
    ``decoders`` section with a "clip" layout graph (``clip_decoder_graph``) for every name but "full"; () leaves the
    section out, as bundles made before decoder variants.
    """
    out.mkdir(parents=True, exist_ok=True)
    s = SYN
    rng = np.random.default_rng(seed)
    if tokenizer_json:
        tok = transformers_json_tokenizer(out / "tokenizer", s["length"])
        vocab_size = len(json.loads((tok / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    else:
        tok = write_tokenizer(out / "tokenizer", world.vocabulary(), model_max_length=s["length"])
        (tok / "special_tokens_map.json").unlink()
        vocab_size = len(json.loads((tok / "vocab.json").read_text(encoding="utf-8")))
    student = kind == "consistency"
    w_dim = s["w_dim"] if student else None
    save_graph(text_encoder_graph(vocab_size, s["length"], s["hidden"], rng), out / "text_encoder.onnx")
    save_graph(unet_graph(s["channels"], s["length"], s["hidden"], w_dim), out / "unet.onnx")
    save_graph(vae_graph(s["channels"], s["factor"], rng), out / "vae_decoder.onnx")
    sched = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    supported = (1, 2, 4) if student else (2, 5)
    rows = max_batch * (1 if student else 2)
    shape = [s["channels"], s["frames"], s["lh"], s["lw"]]
    h, w = s["lh"] * s["factor"], s["lw"] * s["factor"]
    manifest = {
        "schema_version": 1, "turbo_edge_version": "test", "created": "2026-01-01T00:00:00+00:00",
        "source": {"model": "synthetic", "kind": "student" if student else "teacher", "config_hash": "0"},
        "sampler": {
            "kind": kind, "prediction_type": "v_prediction", "num_train_timesteps": 1000,
            "alphas_cumprod": [float(a) for a in param.alphas_cumprod(sched)], "final_alpha_cumprod": 1.0,
            "default_steps": supported[-1] if not student else 4, "supported_steps": list(supported),
            "timesteps": {str(n): [int(t) for t in param.ddim_timesteps(1000, n)] for n in supported},
            "guidance": 2.0, "uses_cfg": not student, "w_embedding_dim": w_dim, "timestep_scaling": 10.0, "sigma_data": 0.5,
        },
        "latent": {"channels": s["channels"], "frames": s["frames"], "height": s["lh"], "width": s["lw"], "scaling_factor": 1.0},
        "video": {"frames": s["frames"], "height": h, "width": w, "fps": 8},
        "text": {"max_length": s["length"], "hidden_size": s["hidden"], "closed_vocabulary": world.vocabulary()},
        "components": {
            "text_encoder": {"files": {"fp32": "text_encoder.onnx"},
                             "profile": {p: {"input_ids": [b, s["length"]]} for p, b in (("min", 1), ("opt", 1), ("max", rows))}},
            "unet": {"files": {"fp32": "unet.onnx"},
                     "profile": {"min": {"sample": [1, s["channels"], 1, s["lh"], s["lw"]]}, "opt": {"sample": [rows, *shape]},
                                 "max": {"sample": [rows, s["channels"], s["frames"] + 1, s["lh"], s["lw"]]}}},
            "vae_decoder": {"files": {"fp32": "vae_decoder.onnx"},
                            "profile": {p: {"latent": [n, s["channels"], s["lh"], s["lw"]]} for p, n in (("min", 1), ("opt", s["frames"]), ("max", 4))}},
        },
        "parity": {},
    }
    if decoders:
        variants = {}
        for name in decoders:
            if name == "full":
                variants[name] = {"component": "vae_decoder", "layout": "frames"}
                continue
            component = f"vae_decoder_{name}"
            save_graph(clip_decoder_graph(s["channels"], s["factor"], rng), out / f"{component}.onnx")
            manifest["components"][component] = {
                "files": {"fp32": f"{component}.onnx"},
                "profile": {p: {"latent": [n, s["channels"], s["frames"], s["lh"], s["lw"]]} for p, n in (("min", 1), ("opt", 1), ("max", max_batch))}}
            variants[name] = {"component": component, "layout": "clip", "class": "TinyDecoder"}
        if "full" not in decoders:
            del manifest["components"]["vae_decoder"]
            (out / "vae_decoder.onnx").unlink()
        manifest["decoders"] = {"default": decoders[0], "variants": variants}
    manifest["files"] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out
