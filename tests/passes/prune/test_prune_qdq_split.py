"""The prune pass on a QDQ graph (onnxruntime's quantize_static) and on intra-layer split parts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgec.compiler.annotations import PRUNE
from edgec.passes import SplitLayer
from edgec.passes.prune import Prune, PruneRequest
from prune_graphs import feeds, pruned, same_outputs
from split_helpers import split_program
from test_prune_graphs import chain, residual


def quantized(model: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    quantization = pytest.importorskip("onnxruntime.quantization")

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([feeds(model, seed) for seed in range(4)])

        def get_next(self):
            return next(self.items, None)

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    quantization.quantize_static(str(src), str(dst), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=True, activation_type=quantization.QuantType.QInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return onnx.load(dst)


def test_qdq_per_channel_scales_follow(tmp_path):
    model = quantized(residual(), tmp_path)
    dq_axes = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dq_axes
    prog, result = pruned(model, ["c0", "c1", "c2"], 0.2)
    assert result.modified
    for node in prog.nodes():
        if node.op_type == "DequantizeLinear" and node.inputs[1].const_value.size > 1:
            axis = node.attributes.get_int("axis", 1)
            assert node.inputs[1].shape[0] == node.inputs[0].shape[axis]
    same_outputs(model, prog, tolerance=1e-4)


def test_split_parts_are_pruned_with_their_merge():
    model = chain()
    prog = split_program(model, ["c1"], "output", 2)
    req = PruneRequest(3 / 14)
    for node in prog.nodes():
        if node.name in ("c1", "c2"):
            node.meta[PRUNE] = req
    SplitLayer()(prog)
    parts = [n for n in prog.nodes() if n.op_type == "Conv" and n.meta.get(PRUNE) is req]
    assert len(parts) == 3
    result = Prune()(prog)
    prog.verify()
    assert result.modified
    x = feeds(model)
    from split_helpers import run

    np.testing.assert_allclose(run(prog.model, x)[0], run(model, x)[0], rtol=1e-5, atol=1e-5)
    assert sum(p.channels_before - p.channels_after for p in prog.pruning) == 3


def test_an_input_split_consumer_follows_its_pruned_producer():
    model = chain()
    prog = split_program(model, ["c2"], "input", 2)
    req = PruneRequest(3 / 14)
    for node in prog.nodes():
        if node.name in ("c1", "c2"):
            node.meta[PRUNE] = req
    SplitLayer()(prog)
    assert any(n.op_type == "Slice" for n in prog.nodes())
    result = Prune()(prog)
    prog.verify()
    assert result.modified
    x = feeds(model)
    from split_helpers import run

    np.testing.assert_allclose(run(prog.model, x)[0], run(model, x)[0], rtol=1e-5, atol=1e-5)


def test_per_channel_activation_qdq_is_sliced_and_per_tensor_kept():
    from graphs import Net
    from prune_graphs import dead_conv

    net = Net({"x": [1, 3, 6, 6]}, seed=11)
    y = dead_conv(net, "c1", "x", 3, 4, [1])
    scale = net.const("s", np.array([0.05, 0.07, 0.06, 0.04], np.float32))
    zero = net.tensor("z", np.zeros(4, np.int8))
    q = net.op("QuantizeLinear", "q", [y, scale, zero], axis=1)
    y = net.op("DequantizeLinear", "dq", [q, scale, zero], axis=1)
    t = net.op("QuantizeLinear", "qt", [y, net.const("st", np.array(0.1, np.float32)), net.tensor("zt", np.array(0, np.int8))])
    y = net.op("DequantizeLinear", "dqt", [t, "st", "zt"])
    net.op("Conv", "c2", [y, net.weight("c2.w", 2, 4, 1, 1)])
    model = net.model(["c2"])
    prog, result = pruned(model, ["c1"], 0.25)
    assert result.modified
    assert list(prog.node("q").inputs[1].shape) == [3] and list(prog.node("dq").inputs[2].shape) == [3]
    assert list(prog.node("qt").inputs[1].shape) == []
    same_outputs(model, prog)
