"""FLOPs of one call of an ONNX graph at given input shapes, from the graph alone (torch-free).

Counts the dense-algebra ops, 2 FLOPs per multiply-add, as ``torch.utils.flop_counter`` does for the same module:
Conv, ConvTranspose, MatMul, Gemm, and their integer forms (MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv). An int8 Q/DQ graph keeps its float MatMul / Conv between DequantizeLinear and QuantizeLinear, so it
counts the same as its fp32 graph. Element-wise ops, norms and softmax are not counted (nor are they by torch).

Shapes come from ``onnx.shape_inference`` after the graph's dynamic input axes are bound to the given shapes; the
weights are never read (``load_external_data=False``), so a multi-GB graph costs what its structure costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv")
FOLD_LIMIT = 4096  # elements: shape arithmetic is folded, anything larger is left to shape inference
MAX_PASSES = 200


def _bind_inputs(model: onnx.ModelProto, input_shapes: dict[str, tuple]) -> None:
    """Write ``input_shapes`` into the graph's input types; an input left dynamic is an error naming it."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    unknown = sorted(set(input_shapes) - {i.name for i in inputs})
    if unknown:
        raise ValueError(f"input_shapes names {unknown}, which the graph does not have; its inputs are {[i.name for i in inputs]}")
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if value.name in input_shapes:
            shape = tuple(int(d) for d in input_shapes[value.name])
            if len(shape) != len(dims):
                raise ValueError(f"input {value.name!r} has rank {len(dims)}, got shape {shape}")
            for dim, size in zip(dims, shape):
                if dim.HasField("dim_value") and dim.dim_value != size:
                    raise ValueError(f"input {value.name!r} has a fixed size {dim.dim_value} where the shape gives {size}: {shape}")
                dim.Clear()
                dim.dim_value = size
        elif any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"input {value.name!r} has dynamic axes: give its shape in input_shapes")


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Name -> static shape of every value shape inference could fix (initializers from their dims)."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return shapes


def _attr(node: onnx.NodeProto, name: str, default):
    attr = next((a for a in node.attribute if a.name == name), None)
    return default if attr is None else helper.get_attribute_value(attr)


def _axes(node: onnx.NodeProto, args: list[np.ndarray], rank: int) -> list[int]:
    axes = args[1] if len(args) > 1 else _attr(node, "axes", [])
    return sorted(int(a) % rank for a in np.atleast_1d(axes))


def _slice(node: onnx.NodeProto, args: list[np.ndarray]) -> np.ndarray:
    data, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 else range(len(starts))
    steps = args[4] if len(args) > 4 else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(min(max(end, -(2**62)), 2**62)), int(step))
    return data[tuple(index)]


def _unsqueeze(node: onnx.NodeProto, args: list[np.ndarray]) -> np.ndarray:
    axes = args[1] if len(args) > 1 else _attr(node, "axes", [])
    out = args[0]
    for axis in sorted(int(a) % (out.ndim + len(np.atleast_1d(axes))) for a in np.atleast_1d(axes)):
        out = np.expand_dims(out, axis)
    return out


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)  # ONNX integer Div truncates toward zero
    return a / b


def _one_hot(node: onnx.NodeProto, args: list[np.ndarray]) -> np.ndarray:
    indices, depth, values = args[0].astype(np.int64), int(np.asarray(args[1]).reshape(-1)[0]), args[2]
    indices = np.where(indices < 0, indices + depth, indices)
    out = np.where(np.arange(depth) == indices[..., None], values[1], values[0])
    axis = _attr(node, "axis", -1)
    return np.moveaxis(out, -1, axis if axis >= 0 else out.ndim + axis)


# The ops that shape arithmetic is made of (what the TorchScript exporter emits around Reshape / Expand / Slice),
# evaluated with numpy on small known values: onnx's own data propagation stops at Cast and scalar Div.
FOLDABLE: dict[str, Callable[[onnx.NodeProto, list[np.ndarray]], np.ndarray]] = {
    "Identity": lambda n, a: a[0],
    "Cast": lambda n, a: a[0].astype(helper.tensor_dtype_to_np_dtype(_attr(n, "to", 1))),
    "Gather": lambda n, a: np.take(a[0], a[1].astype(np.int64), axis=_attr(n, "axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda n, a: np.squeeze(a[0], axis=tuple(_axes(n, a, a[0].ndim))) if (len(a) > 1 or _attr(n, "axes", None)) else np.squeeze(a[0]),
    "Concat": lambda n, a: np.concatenate([np.atleast_1d(x) for x in a], axis=_attr(n, "axis", 0)),
    "Slice": _slice,
    "Reshape": lambda n, a: a[0].reshape([d if d != 0 else a[0].shape[i] for i, d in enumerate(a[1].tolist())]),
    "Add": lambda n, a: a[0] + a[1], "Sub": lambda n, a: a[0] - a[1], "Mul": lambda n, a: a[0] * a[1],
    "Div": lambda n, a: _div(a[0], a[1]), "Neg": lambda n, a: -a[0], "Abs": lambda n, a: np.abs(a[0]),
    "Mod": lambda n, a: np.fmod(a[0], a[1]) if _attr(n, "fmod", 0) else np.mod(a[0], a[1]),  # unflatten(-1) in the DiT's graph
    "Floor": lambda n, a: np.floor(a[0]), "Ceil": lambda n, a: np.ceil(a[0]), "Sqrt": lambda n, a: np.sqrt(a[0]),
    "Max": lambda n, a: np.maximum.reduce(a), "Min": lambda n, a: np.minimum.reduce(a),
    "Equal": lambda n, a: np.equal(a[0], a[1]), "Less": lambda n, a: np.less(a[0], a[1]),
    "Greater": lambda n, a: np.greater(a[0], a[1]), "Not": lambda n, a: np.logical_not(a[0]),
    "Where": lambda n, a: np.where(a[0], a[1], a[2]),
    "OneHot": _one_hot, "Tile": lambda n, a: np.tile(a[0], a[1].astype(np.int64)),
    "Expand": lambda n, a: a[0] * np.ones(a[1].astype(np.int64), dtype=a[0].dtype),
    "Transpose": lambda n, a: np.transpose(a[0], _attr(n, "perm", None)),
    "Range": lambda n, a: np.arange(a[0], a[1], a[2]).astype(a[0].dtype),
    "ReduceProd": lambda n, a: np.prod(a[0], axis=None if not _attr(n, "axes", None) else tuple(_attr(n, "axes", [])),
                                       keepdims=bool(_attr(n, "keepdims", 1))).astype(a[0].dtype),
    "ConstantOfShape": lambda n, a: np.full(a[0].astype(np.int64), numpy_helper.to_array(_attr(n, "value", numpy_helper.from_array(np.zeros(1, np.float32)))).reshape(-1)[0]),
}


def _known_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Small tensors whose values the graph holds: inline initializers and Constant nodes (external data is never read)."""
    values = {}
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL and math.prod(t.dims) <= FOLD_LIMIT:
            values[t.name] = numpy_helper.to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            t = node.attribute[0].t  # an exporter may move a large Constant's tensor to the external data too (Wan's RoPE tables)
            if t.data_location != onnx.TensorProto.EXTERNAL:
                values[node.output[0]] = numpy_helper.to_array(t)
    return values


def _fold_shape_arithmetic(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Evaluate the shape arithmetic that is computable now and turn those nodes into Constants; how many were folded."""
    values = _known_values(model)
    folded = 0
    for node in model.graph.node:
        if node.op_type == "Shape" and node.input[0] in shapes:
            dims = np.array(shapes[node.input[0]], dtype=np.int64)
            start, end = _attr(node, "start", 0), _attr(node, "end", None)
            out = dims[start:end]
        elif node.op_type in FOLDABLE and node.input and all(not i or i in values for i in node.input):
            try:
                out = np.asarray(FOLDABLE[node.op_type](node, [values[i] for i in node.input if i]))
            except (ValueError, TypeError, IndexError, ZeroDivisionError):
                continue  # not evaluable as written: left to shape inference
        else:
            continue
        if out.size > FOLD_LIMIT:
            continue
        values[node.output[0]] = out
        tensor = numpy_helper.from_array(out, node.output[0])
        node.op_type, node.domain = "Constant", ""
        del node.input[:]
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", tensor))
        folded += 1
    return folded


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shape inference alternated with folding the shape arithmetic it could not see through, until nothing changes:
    name -> static shape of every value that then has one. ``model`` (its inputs bound) is folded in place."""
    for _ in range(MAX_PASSES):
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        shapes = _shapes(inferred)
        if not _fold_shape_arithmetic(model, shapes):
            return shapes
    return shapes


def node_flops(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """FLOPs of one counted node (0 for any other op); an unknown operand shape is an error naming the node."""
    if node.op_type not in COUNTED_OPS:
        return 0
    # The operands that carry the shapes: QLinear ops interleave scales and zero points with the data.
    a_name, b_name = (node.input[0], node.input[3]) if node.op_type.startswith("QLinear") else (node.input[0], node.input[1])
    needed = [a_name, b_name, node.output[0]]
    missing = [n for n in needed if n not in shapes]
    if missing:
        raise ValueError(f"{node.op_type} node {node.name or node.output[0]!r}: shape inference left {missing} unknown; "
                         "give every dynamic input's shape (or run onnx.shape_inference on a graph it can read)")
    a, b, out = shapes[a_name], shapes[b_name], shapes[node.output[0]]
    if node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        return 2 * math.prod(out) * a[-1]
    if node.op_type == "Gemm":
        return 2 * math.prod(out) * (a[0] if _attr(node, "transA", 0) else a[1])
    if node.op_type == "ConvTranspose":
        # Every input element is scattered through a (C_out / group) x kernel window: weight is [C_in, C_out/g, *k].
        return 2 * math.prod(a) * math.prod(b[1:])
    return 2 * math.prod(out) * math.prod(b[1:])  # Conv: weight [C_out, C_in/g, *k], one window per output element


def onnx_flops(path: str | Path, input_shapes: dict[str, tuple]) -> int:
    """FLOPs (2 per multiply-add) of one call of the ONNX graph at ``path`` with inputs of ``input_shapes``
    (name -> shape; every input with a dynamic axis must be given)."""
    model = onnx.load(str(path), load_external_data=False)
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    _bind_inputs(model, input_shapes)
    shapes = static_shapes(model)
    return sum(node_flops(node, shapes) for node in model.graph.node)


__all__ = ["COUNTED_OPS", "node_flops", "onnx_flops", "static_shapes"]
