"""Per-node cost figures for `edgec show`: parameters and multiply-accumulates.

MACs are counted for the ops that dominate CNN inference (Conv, ConvTranspose, Gemm,
MatMul); other ops report 0 rather than a guess.
"""

from __future__ import annotations

import math

import onnx_ir as ir


def params(node: ir.Node) -> int:
    return sum(v.const_value.size for v in node.inputs if v is not None and v.is_initializer() and v.const_value is not None)


def _numel(value: ir.Value | None) -> int:
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return 0
    return math.prod(value.shape)


def macs(node: ir.Node) -> int:
    if node.domain not in ("", "ai.onnx") or not node.outputs:
        return 0
    out = node.outputs[0]
    if node.op_type in ("Conv", "ConvTranspose") and len(node.inputs) > 1 and node.inputs[1].shape is not None:
        weight = list(node.inputs[1].shape)
        per_output = math.prod(weight[1:])
        if node.op_type == "ConvTranspose":
            return _numel(node.inputs[0]) * weight[1] * math.prod(weight[2:])
        return _numel(out) * per_output
    if node.op_type in ("Gemm", "MatMul") and node.inputs[0] is not None and node.inputs[0].shape is not None:
        a = list(node.inputs[0].shape)
        k = a[0] if node.op_type == "Gemm" and node.attributes.get_int("transA", 0) else a[-1]
        return _numel(out) * k
    return 0
