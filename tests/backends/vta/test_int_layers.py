"""A VTA-quantized stage read as integer layers: the numpy integer reference equals onnxruntime's QDQ
result within one LSB (rounding ties), and what VTA cannot run is named with a reason."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec.backends.vta.int_layers import IntAdd, IntConv, IntMaxPool, extract, reference, requantize
from edgec.compiler.self_contained import self_contained_proto
from edgec.passes import Quantize, SplitVertical
from graphs import Net


def calibration(folder, shapes):
    folder.mkdir(parents=True)
    for name, shape in shapes.items():
        np.save(folder / f"{name}.npy", np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32))
    return folder


def quantized(model, plan):
    return edgec.compile(model, plan, None, passes=[SplitVertical(), Quantize()]).program


def run(program, feeds):
    proto = self_contained_proto(program.model).SerializeToString()
    return ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, feeds)


def _resnet_block(tmp_path, cin=3, mid=20, out=16, transB=1):
    net = Net({"x": [2, cin, 9, 9]}, seed=1)
    r1 = net.op("Relu", "r1", [net.conv("c1", "x", cin, mid)])
    c2 = net.op("Conv", "c2", [r1, net.weight("c2.w", out, mid, 3, 3), net.weight("c2.b", out)], pads=[1, 1, 1, 1],
                strides=[2, 2])
    c3 = net.op("Conv", "c3", ["x", net.weight("c3.w", out, cin, 1, 1)], strides=[2, 2])
    a = net.op("Relu", "ra", [net.op("Add", "a", [c2, c3])])
    p = net.op("MaxPool", "p", [a], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])
    f = net.op("Flatten", "f", [p])
    w = net.weight("g.w", 10, out * 9) if transB else net.weight("g.w", out * 9, 10)
    g = net.op("Gemm", "g", [f, w, net.weight("g.b", 10)], transB=transB)
    net.op("Gemm", "h", [net.op("Relu", "rg", [g]), net.weight("h.w", 4, 10)], transB=1)
    cal = calibration(tmp_path / "cal", {"x": [2, cin, 9, 9]})
    plan = f'device f {{ accel vta }}\nplace * on f.vta\nquantize f int8 calibrate "{cal}"\n'
    return quantized(net.model(["h"]), plan)


@pytest.mark.parametrize("transB", [1, 0])
def test_reference_matches_onnxruntime_within_one_lsb(tmp_path, transB):
    program = _resnet_block(tmp_path, transB=transB)
    found = extract(program.model.graph)
    kinds = {layer.name: type(layer) for layer in found.layers}
    assert kinds == {"c1": IntConv, "c2": IntConv, "c3": IntConv, "a": IntAdd, "p": IntMaxPool, "g": IntConv}
    assert {(f.node, f.op) for f in found.fallbacks} == {("f", "Flatten"), ("h", "Gemm")}
    assert "not quantized" in next(f.reason for f in found.fallbacks if f.node == "h")
    by_name = {layer.name: layer for layer in found.layers}
    assert by_name["c1"].relu and by_name["a"].relu and not by_name["c2"].relu and by_name["g"].relu
    assert all(np.all(layer.shift >= 0) for layer in found.layers if isinstance(layer, IntConv))

    graph = program.model.graph
    values = {v.name: v for node in graph for v in node.outputs}
    wanted = [layer.y.name for layer in found.layers] + [t.name for t in found.inputs]
    for name in wanted:
        graph.outputs.append(values[name])
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 9)).astype(np.float32)
    got = dict(zip([v.name for v in graph.outputs], run(program, {"x": x})))
    feeds = {t.name: got[t.name] for t in found.inputs}
    ours = reference(found, feeds)
    for layer in found.layers:
        ort, mine = got[layer.y.name].astype(np.int32), ours[layer.y.name].astype(np.int32)
        assert ort.shape == mine.shape, layer.name
        diff = np.abs(ort - mine)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.9, (layer.name, diff.max(), (diff == 0).mean())


def test_requantize_rounds_half_up_wraps_and_clips():
    acc = np.array([5, 6, 7, -5, -6, 1000, -1000], np.int32)
    assert requantize(acc, 2, False).tolist() == [1, 2, 2, -1, -1, 127, -128]
    assert requantize(acc, 2, True).tolist() == [1, 2, 2, 0, 0, 127, 0]
    assert requantize(np.array([3], np.int32), -2, False).tolist() == [12]


def test_float_scales_and_grouped_convs_fall_back_with_reasons(tmp_path):
    net = Net({"x": [1, 4, 6, 6]})
    net.op("Conv", "dw", ["x", net.weight("dw.w", 4, 1, 3, 3)], group=4, pads=[1, 1, 1, 1])
    net.conv("c", "dw", 4, 4)
    cal = calibration(tmp_path / "cal", {"x": [1, 4, 6, 6]})
    vta = quantized(net.model(["c"]), f'device f {{ accel vta }}\nplace * on f.vta\nquantize f int8 calibrate "{cal}"\n')
    reasons = {f.node: f.reason for f in extract(vta.model.graph).fallbacks}
    assert "grouped" in reasons["dw"]
    cpu = quantized(net.model(["c"]), f'device f {{}}\nplace * on f\nquantize f int8 calibrate "{cal}"\n')
    reasons = {f.node: f.reason for f in extract(cpu.model.graph).fallbacks}
    assert "symmetric int8" in reasons["c"] or "power of two" in reasons["c"]
