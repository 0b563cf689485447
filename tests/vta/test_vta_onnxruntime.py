"""VTA layers against onnxruntime's QLinearConv / QLinearMatMul with power-of-two scales: equal
within ±1 LSB (VTA rounds half up, onnxruntime half to even)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec.vta import codegen
from edgec.vta.simulator import simulate


def _run(node, inputs, consts):
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.INT8, a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)[0]


def _scales(shift):
    one, zero = np.array(1.0, np.float32), np.array(0, np.int8)
    return dict(xs=one, xz=zero, ws=one, wz=zero, ys=np.array(2.0 ** shift, np.float32), yz=zero)


def test_conv_within_one_lsb_of_qlinearconv():
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (1, 19, 9, 9), dtype=np.int8)
    w = rng.integers(-128, 128, (21, 19, 3, 3), dtype=np.int8)
    b = rng.integers(-30000, 30000, 21).astype(np.int32)
    shift = 11
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[2, 2])
    want = _run(node, {"x": x}, dict(w=w, b=b, **_scales(shift)))
    layer = codegen.conv2d(x, w, b, stride=2, pads=(1, 1, 1, 1), shift=shift, clip=(-128, 127))
    simulate(layer.program)
    diff = np.abs(layer.output().astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.9


def test_matmul_within_one_lsb_of_qlinearmatmul():
    rng = np.random.default_rng(12)
    a = rng.integers(-128, 128, (6, 70), dtype=np.int8)
    w = rng.integers(-128, 128, (70, 33), dtype=np.int8)  # ONNX: A (M, K) x B (K, N)
    shift = 9
    s = _scales(shift)
    node = helper.make_node("QLinearMatMul", ["a", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    want = _run(node, {"a": a}, dict(w=w, **s))
    layer = codegen.gemm(a, np.ascontiguousarray(w.T), None, shift=shift, clip=(-128, 127))
    simulate(layer.program)
    diff = np.abs(layer.output().astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.9
