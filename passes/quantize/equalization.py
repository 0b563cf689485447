"""Cross-layer equalization (Nagel et al., 2019) for depthwise-separable blocks.

A depthwise convolution's output channels have very different weight ranges, which per-channel
weight scales handle but the per-tensor activation scale of the tensor between it and the
pointwise convolution does not. For a pair A → [Relu] → B where channel i of A's output is
channel i of B's input and one of them is depthwise, scaling A's output channel i by 1/s_i and
B's input channel i by s_i leaves the function unchanged (Relu commutes with a positive scale);
`s_i = sqrt(r1_i / r2_i)` (r1: A's range of output channel i, r2: B's range of input channel i)
makes both ranges sqrt(r1_i · r2_i). Applied to the float weights before calibration, to pairs
whose every node is selected with `equalize`, in two sweeps (a dw conv sits between two pairs).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...compiler.annotations import QuantizeRequest


def _weight(node: ir.Node, index: int) -> np.ndarray | None:
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None or value.const_value is None or len(list(value.uses())) != 1:
        return None
    return value.const_value.numpy().astype(np.float64)


def _depthwise(node: ir.Node) -> bool:
    group = node.attributes.get_int("group", 1)
    return group > 1 and group == node.outputs[0].shape[1]


def _next_conv(node: ir.Node) -> ir.Node | None:
    value = node.outputs[0]
    for _ in range(2):
        uses = list(value.uses())
        if len(uses) != 1 or value.is_graph_output():
            return None
        reader = uses[0].node
        if reader.op_type == "Conv" and uses[0].idx == 0:
            return reader
        if reader.op_type != "Relu":
            return None
        value = reader.outputs[0]
    return None


def _set(node: ir.Node, index: int, array: np.ndarray) -> None:
    value = node.inputs[index]
    value.const_value = ir.Tensor(array.astype(np.float32), name=value.name)


def _pair(a: ir.Node, b: ir.Node) -> bool:
    wa, wb = _weight(a, 1), _weight(b, 1)
    if wa is None or wb is None:
        return False
    channels = wa.shape[0]
    r1 = np.abs(wa.reshape(channels, -1)).max(axis=1)
    if _depthwise(b):
        r2 = np.abs(wb.reshape(channels, -1)).max(axis=1)
    elif b.attributes.get_int("group", 1) == 1 and wb.shape[1] == channels:
        r2 = np.abs(np.moveaxis(wb, 1, 0).reshape(channels, -1)).max(axis=1)
    else:
        return False
    s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
    _set(a, 1, wa / s.reshape(-1, *[1] * (wa.ndim - 1)))
    bias = _weight(a, 2)
    if bias is not None:
        _set(a, 2, bias / s)
    if _depthwise(b):
        _set(b, 1, wb * s.reshape(-1, *[1] * (wb.ndim - 1)))
    else:
        _set(b, 1, wb * s.reshape(1, -1, *[1] * (wb.ndim - 2)))
    return True


def equalize(program, selected: dict[ir.Node, QuantizeRequest]) -> int:
    """Equalize every selected depthwise-separable pair; the number of pairs equalized (last sweep)."""
    count = 0
    for _sweep in range(2):
        count = 0
        for a in list(program.nodes()):
            request = selected.get(a)
            if a.op_type != "Conv" or request is None or not request.equalize:
                continue
            b = _next_conv(a)
            if b is None or not (selected.get(b) and selected[b].equalize) or not (_depthwise(a) or _depthwise(b)):
                continue
            count += _pair(a, b)
    return count
