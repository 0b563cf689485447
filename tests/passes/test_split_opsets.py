"""Intra-layer splits on opset 9, 11 and 13 versions of the same graphs: every created node is valid.

Why: the split tests used opset 17 graphs, and an input split of a Gemm on an opset-9 model (the
light model zoo) wrote parts without C, which Gemm requires before opset 11. Each graph here
is built at opset 9 and raised with `onnx.version_converter`; the rewritten model must pass the
full ONNX checker for its own opset and match the unsplit model in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import edgec
from graphs import Net
from split_helpers import assert_split_equivalent
from zoo import zoo_path

OPSETS = (9, 11, 13)


def at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """`model` (built for opset 9) for `opset`, converted by the ONNX version converter."""
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", 9))
    model.ir_version = 7
    model = onnx.shape_inference.infer_shapes(model)
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    converted = model if opset == 9 else onnx.version_converter.convert_version(model, opset)
    assert converted.opset_import[0].version == opset
    return converted


def checked_split(model: onnx.ModelProto, nodes: list[str], kind: str, parts: int, **kw) -> edgec.Program:
    prog = assert_split_equivalent(model, nodes, kind, parts, **kw)
    onnx.checker.check_model(ir.to_proto(prog.model), full_check=True)
    return prog


def conv(bias: bool = True, group: int = 1) -> onnx.ModelProto:
    net = Net({"x": [1, 6, 10, 9]})
    inputs = ["x", net.weight("c.w", 6, 6 // group, 3, 3)] + ([net.weight("c.b", 6)] if bias else [])
    net.op("Conv", "c", inputs, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], group=group)
    return net.model(["c"])


def gemm(trans_b: int, bias_shape: tuple[int, ...] | None, beta: float = 1.0) -> onnx.ModelProto:
    net = Net({"x": [3, 8]})
    w = net.weight("fc.w", *((5, 8) if trans_b else (8, 5)))
    inputs = ["x", w] + ([net.weight("fc.b", *bias_shape)] if bias_shape is not None else [])
    net.op("Gemm", "fc", inputs, transB=trans_b, beta=beta, alpha=0.5)
    return net.model(["fc"])


def followers() -> onnx.ModelProto:
    """A conv whose channel-wise consumers (BatchNorm, Clip, pooling) follow an output split."""
    net = Net({"x": [1, 3, 8, 8]})
    net.conv("c", "x", 3, 4)
    net.op("BatchNormalization", "bn", ["c", net.weight("s", 4), net.weight("b", 4), net.weight("m", 4),
                                         net.const("v", [0.5, 0.7, 0.9, 1.1])])
    net.op("Clip", "clip", ["bn"], min=-0.5, max=0.5)
    net.op("MaxPool", "p", ["clip"], kernel_shape=[2, 2], strides=[2, 2])
    net.op("Sigmoid", "out", ["p"])
    return net.model(["out"])


def spatial_chain() -> onnx.ModelProto:
    net = Net({"x": [1, 3, 15, 13]})
    net.conv("c1", "x", 3, 4, 3)
    net.op("Relu", "r1", ["c1"])
    net.op("MaxPool", "p1", ["r1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    net.op("Conv", "c2", ["p1", net.weight("c2.w", 5, 4, 3, 3)], pads=[2, 2, 2, 2], dilations=[2, 2])
    net.op("AveragePool", "p2", ["c2"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    return net.model(["p2"])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind", ["output", "input"])
@pytest.mark.parametrize("trans_b,bias_shape,beta", [(1, (5,), 1.0), (0, (1, 5), 2.0), (1, (1,), 1.0), (0, (3, 5), 0.5)])
def test_gemm_parts_are_valid_for_the_opset(opset, kind, trans_b, bias_shape, beta):
    prog = checked_split(at_opset(gemm(trans_b, bias_shape, beta), opset), ["fc"], kind, 3, ratio=[2, 1, 1])
    parts = [n for n in prog.nodes() if n.op_type == "Gemm"]
    assert len(parts) == 3
    if kind == "input":
        assert all(len([v for v in n.inputs if v is not None]) == (3 if opset < 11 else 2) for n in parts)


@pytest.mark.parametrize("opset", (11, 13))
@pytest.mark.parametrize("kind", ["output", "input"])
def test_gemm_without_bias(opset, kind):
    model = onnx.version_converter.convert_version(at_opset(gemm(1, (5,)), 11), opset)
    fc = next(n for n in model.graph.node if n.op_type == "Gemm")
    del fc.input[2]
    del model.graph.initializer[[t.name for t in model.graph.initializer].index("fc.b")]
    checked_split(model, ["fc"], kind, 2)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind", ["output", "input"])
def test_matmul_parts_are_valid_for_the_opset(opset, kind):
    net = Net({"x": [2, 3, 6]})
    net.op("MatMul", "mm", ["x", net.weight("w", 6, 5)])
    checked_split(at_opset(net.model(["mm"]), opset), ["mm"], kind, 2)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind,bias,group", [("filter", True, 1), ("filter", False, 1), ("filter", True, 3),
                                             ("channel", True, 1), ("channel", False, 1), ("spatial", True, 1)])
def test_conv_parts_are_valid_for_the_opset(opset, kind, bias, group):
    checked_split(at_opset(conv(bias, group), opset), ["c"], kind, 3 if group == 1 else 3)


@pytest.mark.parametrize("opset", OPSETS)
def test_followers_are_valid_for_the_opset(opset):
    prog = checked_split(at_opset(followers(), opset), ["c"], "filter", 2)
    assert prog.splits[0].nodes == ["c", "bn", "clip", "p", "out"]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("grid", [(2, 1), (2, 2), (1, 3)])
def test_spatial_tiles_are_valid_for_the_opset(opset, grid):
    chain = ["c1", "r1", "p1", "c2", "p2"]
    checked_split(at_opset(spatial_chain(), opset), chain, "spatial", grid[0] * grid[1], grid=grid)


def test_opset_9_zoo_gemm_input_split_compiles(tmp_path):
    """The case of issue 12: `split n41 by input into 2` on the light VGG-19 (opset 9), through the
    whole compile, whose ONNX backend runs the checker on every sub-model."""
    plan = ("device a { cores 1 }\ndevice b { cores 1 }\n"
            "split n41 by input into 2 on a.cpu, b.cpu\nplace * on a.cpu\n")
    result = edgec.compile(zoo_path("vgg19"), plan, tmp_path / "out")
    assert result.program.model.opset_imports[""] == 9
    parts = [n for n in result.program.nodes() if n.op_type == "Gemm" and n.name.startswith("n41/part")]
    assert len(parts) == 2 and all(len(n.inputs) == 3 for n in parts)
    for stage in result.manifest["stages"]:
        onnx.checker.check_model(str(tmp_path / "out" / stage["model"]), full_check=True)
    zero = [n.inputs[2].const_value.numpy() for n in parts]
    assert all(np.array_equal(c, np.zeros(1, np.float32)) for c in zero)
