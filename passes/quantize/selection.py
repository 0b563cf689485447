"""Which nodes and tensors a quantization touches: the pattern table and the walk over the graph.

`RULES` is the one table of what quantizing an op means: which inputs are activations (get a
QuantizeLinear/DequantizeLinear pair), which is a weight (per-channel int8 with a DequantizeLinear
on the initializer, along `weight_axis`), which is a bias (int32 at scale_x · scale_w), and
whether the op only moves data (`shares_scale`: MaxPool, Reshape, Flatten… — its output keeps its
input's scale and zero point, which onnxruntime needs to drop the pair around it and TVM to
keep the tensor integer). A data-moving op is quantized only between quantized tensors.

A Relu that alone consumes a quantized layer's output is absorbed: the quantized tensor is the
Relu's output (its range starts at 0, so the zero point is the type's minimum and the Q clamps
exactly as the Relu does; onnxruntime's ReluQuantFusion then drops it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import onnx_ir as ir

from ...compiler.annotations import QuantizeRequest, placement_of, quantize_request_of, stage_of


@dataclass(frozen=True)
class OpRule:
    activations: tuple[int, ...] | None = (0,)
    """Input indices quantized as activations; None: every input (Concat)."""
    weight: int | None = None
    weight_axis: Callable[[ir.Node, int], int | None] | None = None
    bias: int | None = None
    shares_scale: bool = False


def _conv_axis(_node: ir.Node, _rank: int) -> int:
    return 0


def _gemm_axis(node: ir.Node, _rank: int) -> int:
    return 0 if node.attributes.get_int("transB", 0) else 1


def _matmul_axis(_node: ir.Node, rank: int) -> int:
    return rank - 1


RULES: dict[str, OpRule] = {
    "Conv": OpRule((0,), weight=1, weight_axis=_conv_axis, bias=2),
    "Gemm": OpRule((0,), weight=1, weight_axis=_gemm_axis, bias=2),
    "MatMul": OpRule((0, 1), weight=1, weight_axis=_matmul_axis),
    "Add": OpRule((0, 1)),
    "Concat": OpRule(None),
    "AveragePool": OpRule((0,)),
    "GlobalAveragePool": OpRule((0,)),
    "MaxPool": OpRule((0,), shares_scale=True),
    "Reshape": OpRule((0,), shares_scale=True),
    "Flatten": OpRule((0,), shares_scale=True),
    "Transpose": OpRule((0,), shares_scale=True),
    "Squeeze": OpRule((0,), shares_scale=True),
    "Unsqueeze": OpRule((0,), shares_scale=True),
}
FLOAT = (ir.DataType.FLOAT,)
FLOAT_OUTPUT_OPS = ("Gemm", "MatMul")


@dataclass
class WeightUse:
    node: ir.Node
    index: int
    axis: int | None


@dataclass
class Selection:
    """The result of the walk: per quantized tensor its request and, for a data-moving op's output,
    the tensor whose parameters it shares; the quantized nodes; their weights and biases."""

    tensors: dict[str, QuantizeRequest] = field(default_factory=dict)
    values: dict[str, ir.Value] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)
    requests: dict[str, QuantizeRequest] = field(default_factory=dict)
    """The request of each quantized node, by name."""
    absorbed: set[str] = field(default_factory=set)
    weights: list[WeightUse] = field(default_factory=list)
    biases: list[tuple[ir.Node, int, str]] = field(default_factory=list)
    """(node, input index, the activation tensor whose scale times the weight's is the bias scale)."""
    layer_input: dict[str, str] = field(default_factory=dict)
    """Per weight-bearing node, its activation input's name before any rewiring (its scale scales the bias)."""
    consumers: dict[str, list[ir.Node]] = field(default_factory=dict)
    """Per quantized tensor, the quantized nodes that read it (they read the DequantizeLinear's output)."""

    def quantized_output(self, name: str) -> bool:
        """Whether `name` is a graph output that a quantized node (or its absorbed Relu) produces and that
        gets a Q/DQ pair: not the output of a Gemm or MatMul, whose integer kernels (onnxruntime's QGemm,
        MatMulIntegerToFloat; TVM's dense with a float requantize) write float, so model outputs such as
        logits keep full precision; a Conv needs the pair to become an integer kernel at all."""
        value = self.values[name]
        producer = value.producer()
        return (value.is_graph_output() and producer is not None and producer.op_type not in FLOAT_OUTPUT_OPS
                and (producer in self.nodes or producer.name in self.absorbed))

    def add(self, value: ir.Value, request: QuantizeRequest, consumer: ir.Node | None = None) -> None:
        self.tensors.setdefault(value.name, request)
        self.values[value.name] = value
        if consumer is not None and consumer not in self.consumers.setdefault(value.name, []):
            self.consumers[value.name].append(consumer)


def requests_by_node(program, requests: list[QuantizeRequest]) -> dict[ir.Node, QuantizeRequest]:
    """The request that governs each node: its own (a selector statement) or its device's."""
    by_device = {r.device: r for r in requests if r.device is not None}
    chosen = {}
    for node in program.nodes():
        request = quantize_request_of(node)
        placement = placement_of(node)
        if request is None and placement is not None:
            request = by_device.get(placement.device)
        if request is not None and not request.wire:
            chosen[node] = request
    return chosen


def _is_float_activation(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is None and value.dtype in FLOAT


def _const(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def _absorbed_relu(node: ir.Node, value: ir.Value, selected: dict) -> ir.Node | None:
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    relu = uses[0].node
    if relu.op_type != "Relu" or relu.domain not in ("", "ai.onnx"):
        return None
    if relu not in selected or stage_of(relu) != stage_of(node):
        return None
    return relu


def select(program, selected: dict[ir.Node, QuantizeRequest]) -> Selection:
    """Walk the graph in order and collect what quantizing the `selected` nodes touches."""
    sel = Selection()
    for node in program.nodes():
        request = selected.get(node)
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if request is None or rule is None or node.name in sel.absorbed or not node.outputs:
            continue
        out = node.outputs[0]
        if out.dtype not in FLOAT:
            continue
        if rule.shares_scale:
            x = node.inputs[0]
            if x is None or x.name not in sel.tensors:
                continue
            sel.add(x, request, node)
            sel.add(out, request)
            sel.shared[out.name] = x.name
            sel.nodes.append(node)
            sel.requests[node.name] = request
            continue
        weight = node.inputs[rule.weight] if rule.weight is not None and len(node.inputs) > rule.weight else None
        if rule.weight is not None and node.op_type != "MatMul" and not _const(weight):
            continue
        indices = range(len(node.inputs)) if rule.activations is None else rule.activations
        activations = [i for i in indices if i < len(node.inputs) and _is_float_activation(node.inputs[i])]
        if not activations:
            continue
        for i in activations:
            sel.add(node.inputs[i], request, node)
        if _const(weight) and weight.dtype in FLOAT:
            granularity = request.granularity == "per_channel" and len(weight.shape) >= 2
            axis = rule.weight_axis(node, len(weight.shape)) if granularity and rule.weight_axis else None
            sel.weights.append(WeightUse(node, rule.weight, axis))
            sel.layer_input[node.name] = node.inputs[0].name
            bias = node.inputs[rule.bias] if rule.bias is not None and len(node.inputs) > rule.bias else None
            if _const(bias) and bias.dtype in FLOAT:
                sel.biases.append((node, rule.bias, node.inputs[0].name))
        relu = _absorbed_relu(node, out, selected)
        if relu is not None:
            sel.absorbed.add(relu.name)
            out = relu.outputs[0]
        sel.add(out, request)
        for use in out.uses():
            sel.add(out, request, use.node)
        sel.nodes.append(node)
        sel.requests[node.name] = request
    return sel
