"""A small graph builder for the benchmark zoo: torchvision-style layers as named ONNX nodes.

Why a builder of our own: the benchmarks need real-size VGG/ResNet/DenseNet without torch,
and the tests need their exact parameter counts without drawing 143M random numbers. So the
builder records each weight as a *spec* (name, shape, role) and only materializes tensors
when a model is asked for with weights; a weight-free model keeps the weights as typed graph
inputs, which still passes `onnx.checker` and shape inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
BN_BUFFERS = ("running_mean", "running_var")


@dataclass(frozen=True)
class WeightSpec:
    """One weight: `role` decides how it is drawn and whether torchvision counts it as a parameter."""

    name: str
    shape: tuple[int, ...]
    role: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_parameter(self) -> bool:
        """torchvision's count: BatchNorm running statistics are buffers, not parameters."""
        return self.role not in BN_BUFFERS


@dataclass
class GraphBuilder:
    """Appends nodes in topological order; each layer method returns its output value's name."""

    name: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    weights: list[WeightSpec] = field(default_factory=list)

    def _weight(self, name: str, shape: tuple[int, ...], role: str) -> str:
        self.weights.append(WeightSpec(name, tuple(int(d) for d in shape), role))
        return name

    def _node(self, op: str, name: str, inputs: list[str], **attrs) -> str:
        out = f"{name}.out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, name: str, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0,
             bias: bool = False) -> str:
        inputs = [x, self._weight(f"{name}.weight", (cout, cin, k, k), "conv")]
        if bias:
            inputs.append(self._weight(f"{name}.bias", (cout,), "bias"))
        return self._node("Conv", name, inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def bn(self, name: str, x: str, channels: int, residual: bool = False) -> str:
        """`residual` marks the last BN of a residual branch (drawn small, like zero_init_residual)."""
        roles = ("gamma_residual" if residual else "gamma", "beta", *BN_BUFFERS)
        suffixes = ("weight", "bias", *BN_BUFFERS)
        inputs = [self._weight(f"{name}.{s}", (channels,), r) for s, r in zip(suffixes, roles)]
        return self._node("BatchNormalization", name, [x, *inputs], epsilon=1e-5)

    def relu(self, name: str, x: str) -> str:
        return self._node("Relu", name, [x])

    def maxpool(self, name: str, x: str, k: int, stride: int, pad: int = 0) -> str:
        return self._node("MaxPool", name, [x], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def avgpool(self, name: str, x: str, k: int, stride: int) -> str:
        return self._node("AveragePool", name, [x], kernel_shape=[k, k], strides=[stride, stride])

    def global_avgpool(self, name: str, x: str) -> str:
        return self._node("GlobalAveragePool", name, [x])

    def flatten(self, name: str, x: str) -> str:
        return self._node("Flatten", name, [x], axis=1)

    def linear(self, name: str, x: str, fin: int, fout: int) -> str:
        w = self._weight(f"{name}.weight", (fout, fin), "linear")
        b = self._weight(f"{name}.bias", (fout,), "bias")
        return self._node("Gemm", name, [x, w, b], transB=1)

    def add(self, name: str, a: str, b: str) -> str:
        return self._node("Add", name, [a, b])

    def concat(self, name: str, xs: list[str]) -> str:
        return self._node("Concat", name, list(xs), axis=1)

    @property
    def parameters(self) -> int:
        return sum(w.size for w in self.weights if w.is_parameter)

    @property
    def buffers(self) -> int:
        return sum(w.size for w in self.weights if not w.is_parameter)

    @property
    def weight_bytes(self) -> int:
        return 4 * sum(w.size for w in self.weights)

    def model(self, classes: int = 1000, resolution: int = 224, *, weights: bool = True, seed: int = 0) -> onnx.ModelProto:
        """Input `input`, output `output` (the last node's); with `weights=False` the weights are
        typed graph inputs, so nothing is drawn."""
        self.nodes[-1].output[0] = "output"
        image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, resolution, resolution])
        result = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])
        if weights:
            rng = np.random.default_rng(seed)
            initializers = [numpy_helper.from_array(draw(spec, rng), spec.name) for spec in self.weights]
            inputs = [image]
        else:
            initializers = []
            inputs = [image] + [helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.shape))
                                for w in self.weights]
        graph = helper.make_graph(self.nodes, self.name, inputs, [result], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgec-bench")
        model.ir_version = IR_VERSION
        return model


def draw(spec: WeightSpec, rng: np.random.Generator) -> np.ndarray:
    """Seeded weights with the right scale per role, so activations stay finite through 150 layers."""
    shape, role = spec.shape, spec.role
    if role in ("conv", "linear"):
        fan_in = int(np.prod(shape[1:]))
        array = rng.standard_normal(shape, dtype=np.float32)
        array *= np.float32(np.sqrt(2.0 / fan_in))
        return array
    if role in ("gamma", "running_var"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if role == "gamma_residual":
        return rng.uniform(0.1, 0.3, shape).astype(np.float32)
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)).astype(np.float32)
