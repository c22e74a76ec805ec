"""FLOPs of ONNX graphs counted from their structure (torch-free): hand-built graphs whose counts are known by
hand, dynamic axes bound to the given shapes through the exporter's shape arithmetic, and int8 Q/DQ graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from turbo_edge.runtime.flops import onnx_flops


def _save(tmp_path, nodes, inputs, outputs, inits, name="g.onnx", external=False, convert_attribute=False):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location=name + ".data", size_threshold=0,
              convert_attribute=convert_attribute)
    return path


def _w(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def _c(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _attention_like(tmp_path, quantized=False):
    """x [batch, seq, 32] -> Linear(32->64) -> reshape to heads via exported-style arithmetic -> q @ k^T."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "one"], ["s"], axis=0),
        helper.make_node("Div", ["s", "two"], ["half"]),  # onnx's data propagation stops at Div and Cast
        helper.make_node("Cast", ["half"], ["half_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["half_f"], ["half_i"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        helper.make_node("Unsqueeze", ["half_i", "axes0"], ["h1"]),
        helper.make_node("Concat", ["b1", "h1", "minus1"], ["new_shape"], axis=0),
    ]
    weight = "w"
    if quantized:
        nodes += [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["xdq"]),
                  helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"])]
    nodes += [
        helper.make_node("MatMul", ["xdq" if quantized else "x", weight], ["y"]),  # 2 * b * s * 32 * 64
        helper.make_node("Reshape", ["y", "new_shape"], ["r"]),  # [b, s/2, 128]
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["r", "rt"], ["scores"]),  # 2 * b * (s/2)^2 * 128
    ]
    inits = [_c("zero", 0), _c("one", 1), _c("two", 2), _c("axes0", [0]), _c("minus1", [-1])]
    if quantized:
        inits += [numpy_helper.from_array(np.int8(1).reshape(()) * np.ones((32, 64), np.int8), "wq"),
                  numpy_helper.from_array(np.float32(0.1), "scale"), numpy_helper.from_array(np.int8(0), "zp")]
    else:
        inits.append(_w("w", 32, 64))
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 32])],
                 [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["b", "i", "j"])], inits, name=f"attn{int(quantized)}.onnx")


def test_matmuls_through_the_exporters_shape_arithmetic(tmp_path):
    path = _attention_like(tmp_path)
    b, s = 3, 10
    assert onnx_flops(path, {"x": (b, s, 32)}) == 2 * b * s * 32 * 64 + 2 * b * (s // 2) ** 2 * 128
    assert onnx_flops(path, {"x": (1, 4, 32)}) == 2 * 4 * 32 * 64 + 2 * 2**2 * 128  # the binding follows the shapes


def test_int8_qdq_graph_counts_the_same_ops(tmp_path):
    assert onnx_flops(_attention_like(tmp_path, quantized=True), {"x": (2, 6, 32)}) == onnx_flops(_attention_like(tmp_path), {"x": (2, 6, 32)})


def test_conv_grouped_conv_transpose_and_gemm(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),  # 8 -> 16 channels, 3x3, same size
        helper.make_node("Conv", ["c1", "w2"], ["c2"], group=4, strides=[2, 2]),  # grouped 1x1, stride 2
        helper.make_node("ConvTranspose", ["c2", "w3"], ["c3"], strides=[2, 2]),  # 16 -> 4 channels, 2x2 kernel
        helper.make_node("Flatten", ["c3"], ["f"]),
        helper.make_node("Gemm", ["wt", "f"], ["g"], transA=1, transB=1),  # A^T [5, K] x B^T [K, n]
    ]
    n, h = 2, 8
    k = 4 * h * h
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, h, h])],
                 [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["m", "n"])],
                 [_w("w1", 16, 8, 3, 3), _w("w2", 16, 4, 1, 1), _w("w3", 16, 4, 2, 2), _w("wt", k, 5)])
    conv1 = 2 * (n * 16 * h * h) * 8 * 9
    conv2 = 2 * (n * 16 * (h // 2) ** 2) * 4
    deconv = 2 * (n * 16 * (h // 2) ** 2) * 4 * 4
    gemm = 2 * 5 * n * k
    assert onnx_flops(path, {"x": (n, 8, h, h)}) == conv1 + conv2 + deconv + gemm


def test_weights_are_never_read(tmp_path):
    path = _attention_like(tmp_path)
    external = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])], [_w("w", 32, 64)], name="ext.onnx", external=True)
    (tmp_path / "ext.onnx.data").write_bytes(b"")  # truncated weights: a reader of the data would fail
    assert onnx_flops(external, {"x": (7, 32)}) == 2 * 7 * 32 * 64
    # A Constant node's tensor in the external data too (the exporter moves large ones there: Wan's RoPE tables).
    const = helper.make_node("Constant", [], ["w"], value=_w("w_value", 32, 64))
    ext_const = _save(tmp_path, [const, helper.make_node("MatMul", ["x", "w"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])], [], name="const.onnx", external=True,
                      convert_attribute=True)
    assert onnx.load(str(ext_const), load_external_data=False).graph.node[0].attribute[0].t.data_location == TensorProto.EXTERNAL
    (tmp_path / "const.onnx.data").unlink()
    assert onnx_flops(ext_const, {"x": (7, 32)}) == 2 * 7 * 32 * 64
    assert onnx_flops(path, {"x": (1, 2, 32)}) > 0


def test_dynamic_input_left_unbound_or_misnamed_is_an_error(tmp_path):
    path = _attention_like(tmp_path)
    with pytest.raises(ValueError, match="'x' has dynamic axes"):
        onnx_flops(path, {})
    with pytest.raises(ValueError, match=r"names \['y'\]"):
        onnx_flops(path, {"x": (1, 2, 32), "y": (1,)})
    with pytest.raises(ValueError, match="fixed size 32"):
        onnx_flops(path, {"x": (1, 2, 16)})
