"""Tiny graphs for pass-level tests, each built in a few lines.

`build("x -> a:Relu -> b:Relu")`-style helpers would hide too much; instead `Net` collects
named nodes with onnx.helper and returns a checked `onnx.ModelProto`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.compiler.annotations import PLACEMENT, Placement
from edgec.compiler.platform import Device, Platform
from edgec.compiler.facts import Fact


class Net:
    def __init__(self, inputs: dict[str, list[int]], seed: int = 0) -> None:
        self.inputs = inputs
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)

    def op(self, op_type: str, name: str, inputs: list[str], **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def weight(self, name: str, *shape: int) -> str:
        self.weights.append(numpy_helper.from_array(self.rng.standard_normal(shape).astype(np.float32) * 0.5, name))
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def tensor(self, name: str, array: np.ndarray) -> str:
        """A constant of `array`'s own dtype (int64 shapes, bool flags)."""
        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def conv(self, name: str, x: str, cin: int, cout: int, k: int = 3) -> str:
        return self.op("Conv", name, [x, self.weight(name + ".w", cout, cin, k, k)], pads=[k // 2] * 4)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "test",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in self.inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
            self.weights,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model


def chain(length: int = 4) -> onnx.ModelProto:
    """x → n0 → n1 → … (Relu/Sigmoid alternating), shape [1, 4]."""
    net = Net({"x": [1, 4]})
    prev = "x"
    for i in range(length):
        prev = net.op("Relu" if i % 2 == 0 else "Sigmoid", f"n{i}", [prev])
    return net.model([prev])


def diamond() -> onnx.ModelProto:
    """x → a → (b, c) → d=Add(b, c): a tensor consumed by two branches, joined again."""
    net = Net({"x": [1, 2, 8, 8]})
    net.conv("a", "x", 2, 4)
    net.op("Relu", "b", ["a"])
    net.op("Sigmoid", "c", ["a"])
    net.op("Add", "d", ["b", "c"])
    return net.model(["d"])


def two_io() -> onnx.ModelProto:
    """Two inputs, two outputs: y1 = Relu(x1) + x2, y2 = Sigmoid(x2)."""
    net = Net({"x1": [1, 4], "x2": [1, 4]})
    net.op("Relu", "r", ["x1"])
    net.op("Add", "y1", ["r", "x2"])
    net.op("Sigmoid", "y2", ["x2"])
    return net.model(["y1", "y2"])


def program(model: onnx.ModelProto, placement: dict[str, str], devices: tuple[str, ...] = ("a", "b", "c")) -> edgec.Program:
    """A Program with every node placed by `placement` (node → device, '*' as default)."""
    platform = Platform()
    for d in devices:
        platform.add(Device(d, cores=2))
    prog = edgec.Program(edgec.load_model(model), platform)
    for node in prog.nodes():
        device = placement.get(node.name, placement.get("*"))
        node.meta[PLACEMENT] = Placement(device)
    prog.facts.add(Fact.PLACED)
    return prog
