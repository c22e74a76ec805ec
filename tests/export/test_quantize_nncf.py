"""NNCF's ONNX int8 pass with the producer map built once per graph state (``quantize._producer_map_built_once``):
the same graph, byte for byte, as NNCF alone writes, from far fewer rebuilds of the map."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from turbo_edge.export import quantize as q


def _gather_matmul_chain(path: Path, blocks: int = 12) -> None:
    """An embedding lookup, then ``blocks`` MatMul + Add + Relu layers, each with a Shape -> Gather on the side (as a
    dynamic-shape export writes them): enough Gather and MatMul nodes for NNCF to classify one by one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "table")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["h0"], name="embed")]
    for i in range(blocks):
        inits += [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.3, f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(16).astype(np.float32) * 0.1, f"b{i}"),
                  numpy_helper.from_array(np.array(0, np.int64), f"axis{i}")]
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"], name=f"relu{i}"),
                  helper.make_node("Shape", [f"h{i + 1}"], [f"s{i}"], name=f"shape{i}"),
                  helper.make_node("Gather", [f"s{i}", f"axis{i}"], [f"g{i}"], name=f"dim{i}")]
    outputs = [helper.make_tensor_value_info(f"h{blocks}", TensorProto.FLOAT, ["n", 16])]
    outputs += [helper.make_tensor_value_info(f"g{i}", TensorProto.INT64, []) for i in range(blocks)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])], outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_quantized_graph_is_nncfs_own_from_fewer_map_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nncf")
    import onnx
    from nncf.onnx.graph.metatypes import onnx_metatypes as mt

    src = tmp_path / "chain.onnx"
    _gather_matmul_chain(src)
    feeds = [{"ids": np.random.default_rng(i).integers(0, 32, 8)} for i in range(4)]
    options = q.Int8Options(subset_size=4, bias_correction=False, ignored_patterns=(), model_type="default")
    original = mt.get_parents_node_mapping
    builds = {"patched": 0, "nncf": 0}

    def counted(model):
        builds[mode] += 1
        return original(model)

    monkeypatch.setattr(mt, "get_parents_node_mapping", counted)
    for mode in ("patched", "nncf"):
        if mode == "nncf":
            monkeypatch.setattr(q, "_producer_map_built_once", contextlib.nullcontext)
        q.quantize_int8(src, tmp_path / f"{mode}.onnx", feeds, options)
    graphs = {m: onnx.load(str(tmp_path / f"{m}.onnx")) for m in builds}
    assert sum(n.op_type == "QuantizeLinear" for n in graphs["patched"].graph.node) >= 10  # it did quantize the MatMuls (11 measured)
    assert graphs["patched"].SerializeToString() == graphs["nncf"].SerializeToString()
    assert builds["patched"] <= 3 and builds["nncf"] >= 13 * builds["patched"], builds  # measured 1 against 65
    assert mt.get_parents_node_mapping is counted  # the call site is restored after NNCF returns


def test_a_later_nncf_without_the_call_site_runs_unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nncf")
    from nncf.onnx.graph.metatypes import onnx_metatypes as mt

    monkeypatch.delattr(mt, "get_parents_node_mapping")
    with q._producer_map_built_once():
        assert not hasattr(mt, "get_parents_node_mapping")
