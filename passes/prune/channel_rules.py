"""How channels flow through each op: one small rule per op type (a table, not an if-chain).

A rule reads the channel maps of a node's inputs and sets those of its outputs, creating
fresh elements (a source layer), passing elements through, tying them (union), or blocking
them with a reason. `opaque` is the rule of every op not in the table: its inputs' channels
are blocked, its outputs have none.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx_ir as ir

from . import params
from .channels import ChannelGraph, ChannelMap, Source

Rule = Callable[[ChannelGraph, ir.Node], None]


def _ints(value: ir.Value | None) -> list[int] | None:
    array = params.constant(value)
    return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


def _axes(node: ir.Node, rank: int, input_index: int = 1) -> list[int] | None:
    attr = node.attributes.get("axes")
    axes = list(attr.as_ints()) if attr is not None else None
    if axes is None and len(node.inputs) > input_index and node.inputs[input_index] is not None:
        axes = _ints(node.inputs[input_index])
    return None if axes is None else [a + rank if a < 0 else a for a in axes]


def _describe(node: ir.Node) -> str:
    return f"{node.op_type} '{node.name}'"


def opaque(cg: ChannelGraph, node: ir.Node) -> None:
    for value in node.inputs:
        if value is not None:
            cg.block(value, f"{_describe(node)} has no channel rule (its input channels cannot change)")


def _source(cg: ChannelGraph, node: ir.Node, axis: int, count: int) -> None:
    elems = cg.fresh(count)
    cg.sources.append(Source(node, elems))
    cg.maps[node.outputs[0]] = ChannelMap(axis, elems)


def conv(cg: ChannelGraph, node: ir.Node) -> None:
    x, w = node.inputs[0], node.inputs[1]
    weight = params.weight(w)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if weight is None or (bias is not None and not params.is_parameter(bias)):
        return opaque(cg, node)
    m, group = cg.maps.get(x), node.attributes.get_int("group", 1)
    cin, cout = x.shape[1], weight.shape[0]
    if m is not None and m.axis != 1:
        cg.block(x, f"{_describe(node)} reads channels on axis 1, not {m.axis}")
        m = None
    if group == 1:
        return _source(cg, node, 1, cout)
    if group == cin and weight.shape[1] == 1 and m is not None:
        cg.maps[node.outputs[0]] = ChannelMap(1, np.repeat(m.elems, cout // cin))
        return
    cg.block(x, f"{_describe(node)} is a grouped convolution ({group} groups), which keeps its channels")


def gemm(cg: ChannelGraph, node: ir.Node) -> None:
    weight = params.weight(node.inputs[1])
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if weight is None or node.attributes.get_int("transA", 0) or (bias is not None and not params.is_parameter(bias)):
        return opaque(cg, node)
    m = cg.maps.get(node.inputs[0])
    if m is not None and m.axis != 1:
        cg.block(node.inputs[0], f"{_describe(node)} reads columns on axis 1, not {m.axis}")
    count = weight.shape[0] if node.attributes.get_int("transB", 0) else weight.shape[1]
    _source(cg, node, 1, count)


def matmul(cg: ChannelGraph, node: ir.Node) -> None:
    weight = params.weight(node.inputs[1])
    a = node.inputs[0]
    if weight is None or weight.ndim != 2 or a.shape is None or len(a.shape) < 2:
        return opaque(cg, node)
    m = cg.maps.get(a)
    if m is not None and m.axis != len(a.shape) - 1:
        cg.block(a, f"{_describe(node)} reads its last axis, not axis {m.axis}")
    _source(cg, node, len(node.outputs[0].shape) - 1, weight.shape[1])


def passthrough(cg: ChannelGraph, node: ir.Node) -> None:
    """Unary ops: every output has the channels of input 0 (MaxPool's indices too)."""
    m = cg.maps.get(node.inputs[0])
    for value in node.inputs[1:]:
        if value is not None and not params.is_parameter(value):
            cg.block(value, f"{_describe(node)} has a non-constant parameter")
    if m is not None:
        for out in node.outputs:
            cg.maps[out] = m


def channel_first(cg: ChannelGraph, node: ir.Node) -> None:
    """BatchNorm, InstanceNorm and pooling: channels on axis 1 only (their parameters are per channel)."""
    m = cg.maps.get(node.inputs[0])
    if m is not None and m.axis != 1:
        cg.block(node.inputs[0], f"{_describe(node)} works on axis 1, not {m.axis}")
        return
    passthrough(cg, node)


def quantize(cg: ChannelGraph, node: ir.Node) -> None:
    """Q/DQ pass channels; their scale and zero point must be constants (per-channel ones get sliced)."""
    if any(v is not None and v.const_value is None for v in node.inputs[1:]):
        return opaque(cg, node)
    passthrough(cg, node)


def _unchanged_axis(cg: ChannelGraph, node: ir.Node, ok: bool, why: str) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    if not ok:
        cg.block(node.inputs[0], f"{_describe(node)} {why}")
        return
    cg.maps[node.outputs[0]] = m


def resize(cg: ChannelGraph, node: ir.Node) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    scales = params.constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    sizes = node.inputs[3] if len(node.inputs) > 3 else None
    if node.op_type == "Upsample":
        scales = params.constant(node.inputs[1]) if len(node.inputs) > 1 else None
    ok = (scales is not None and scales.size and float(scales.reshape(-1)[m.axis]) == 1.0) or \
         (sizes is not None and sizes.const_value is not None)
    _unchanged_axis(cg, node, bool(ok), "rescales its channel axis (or its scales are not constant)")


def pad(cg: ChannelGraph, node: ir.Node) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    attr = node.attributes.get("pads")
    pads = list(attr.as_ints()) if attr is not None else _ints(node.inputs[1] if len(node.inputs) > 1 else None)
    rank = len(node.inputs[0].shape)
    ok = pads is not None and len(node.inputs) <= 3 and pads[m.axis] == 0 and pads[m.axis + rank] == 0
    _unchanged_axis(cg, node, ok, "pads its channel axis (or its pads are not constant)")


def elementwise(cg: ChannelGraph, node: ir.Node) -> None:
    """Add/Sub/Mul/Div/…: mapped inputs aligned by broadcasting are tied; constants with the full
    channel dimension are sliced later; any other input of the full dimension blocks the channels."""
    out = node.outputs[0]
    rank = len(out.shape)
    mapped = [(v, cg.maps[v]) for v in node.inputs if v is not None and v in cg.maps]
    if not mapped:
        return
    axes = {m.axis + rank - len(v.shape) for v, m in mapped}
    if len(axes) != 1:
        for v, _ in mapped:
            cg.block(v, f"{_describe(node)} combines channel axes {sorted(axes)}")
        return
    axis = axes.pop()
    first = mapped[0][1]
    for v in node.inputs:
        if v is None or v in cg.maps:
            continue
        aligned = axis - (rank - len(v.shape))
        if aligned >= 0 and v.shape[aligned] != 1 and not params.is_parameter(v):
            for w, _ in mapped:
                cg.block(w, f"{_describe(node)} combines them with '{v.name}', whose channels cannot be removed")
            return
    for _, m in mapped[1:]:
        if len(m.elems) == len(first.elems):
            cg.union(first.elems, m.elems)
    widest = max(mapped, key=lambda vm: len(vm[1].elems))[1]
    cg.maps[out] = ChannelMap(axis, widest.elems)


def concat(cg: ChannelGraph, node: ir.Node) -> None:
    out = node.outputs[0]
    axis = node.attributes.get_int("axis", 0)
    axis = axis + len(out.shape) if axis < 0 else axis
    inputs = [v for v in node.inputs if v is not None]
    maps = [cg.maps.get(v) for v in inputs]
    if not any(maps):
        return
    if all(m is None or m.axis == axis for m in maps):
        parts = []
        for v, m in zip(inputs, maps):
            if m is None:
                m = ChannelMap(axis, cg.fresh(v.shape[axis]))
                cg.blocks.append((m.elems, f"{_describe(node)} concatenates '{v.name}', whose channels cannot be removed"))
            parts.append(m.elems)
        cg.maps[out] = ChannelMap(axis, np.concatenate(parts))
        return
    if all(m is not None and m.axis == maps[0].axis for m in maps):
        for m in maps[1:]:
            cg.union(maps[0].elems, m.elems)
        cg.maps[out] = maps[0]
        return
    for v in inputs:
        cg.block(v, f"{_describe(node)} joins tensors whose channels lie on different axes")


def split(cg: ChannelGraph, node: ir.Node) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    rank = len(node.inputs[0].shape)
    axis = node.attributes.get_int("axis", 0)
    axis = axis + rank if axis < 0 else axis
    if axis != m.axis:
        for out in node.outputs:
            cg.maps[out] = m
        return
    start = 0
    for out in node.outputs:
        size = out.shape[axis]
        cg.maps[out] = ChannelMap(axis, m.elems[start:start + size])
        start += size


def slice_(cg: ChannelGraph, node: ir.Node) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    rank = len(node.inputs[0].shape)
    starts, ends = (_ints(node.inputs[i]) if len(node.inputs) > i else None for i in (1, 2))
    axes = _ints(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
    steps = _ints(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] is not None else None
    if starts is None or ends is None or (len(node.inputs) > 3 and node.inputs[3] is not None and axes is None):
        return _unchanged_axis(cg, node, False, "slices with non-constant bounds")
    axes = [a + rank if a < 0 else a for a in (axes or list(range(len(starts))))]
    if m.axis not in axes:
        cg.maps[node.outputs[0]] = m
        return
    i = axes.index(m.axis)
    if steps is not None and steps[i] != 1:
        return _unchanged_axis(cg, node, False, "slices its channel axis with a step")
    size = len(m.elems)
    lo, hi = (max(0, min(size, b + size if b < 0 else b)) for b in (starts[i], ends[i]))
    cg.maps[node.outputs[0]] = ChannelMap(m.axis, m.elems[lo:hi])


def flatten(cg: ChannelGraph, node: ir.Node) -> None:
    x = node.inputs[0]
    m = cg.maps.get(x)
    if m is None:
        return
    rank = len(x.shape)
    f = node.attributes.get_int("axis", 1)
    f = f + rank if f < 0 else f
    _flattened(cg, node, m, list(x.shape), f)


def _flattened(cg: ChannelGraph, node: ir.Node, m: ChannelMap, shape: list[int], f: int) -> None:
    """Channel c of [.., C, inner..] becomes a block of prod(inner) columns after flattening from `f`."""
    if m.axis < f:
        cg.block(node.inputs[0], f"{_describe(node)} merges the channel axis into the batch axis")
        return
    inner = int(np.prod(shape[m.axis + 1:], dtype=np.int64))
    outer = int(np.prod(shape[f:m.axis], dtype=np.int64))
    cg.maps[node.outputs[0]] = ChannelMap(1, np.tile(np.repeat(m.elems, inner), outer))


def reshape(cg: ChannelGraph, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    m = cg.maps.get(x)
    if m is None:
        return
    src, dst = list(x.shape), list(out.shape)
    if params.constant(node.inputs[1]) is None:
        return _unchanged_axis(cg, node, False, "reshapes to a shape that is not a constant")
    if dst[:m.axis + 1] == src[:m.axis + 1]:
        cg.maps[out] = m
        return
    if len(dst) == 2 and dst[0] == int(np.prod(src[:1])) and m.axis >= 1:
        return _flattened(cg, node, m, src, 1)
    cg.block(x, f"{_describe(node)} reshapes {src} to {dst}, which mixes channels")


def transpose(cg: ChannelGraph, node: ir.Node) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None:
        return
    rank = len(node.inputs[0].shape)
    attr = node.attributes.get("perm")
    perm = list(attr.as_ints()) if attr is not None else list(reversed(range(rank)))
    cg.maps[node.outputs[0]] = ChannelMap(perm.index(m.axis), m.elems)


def reduce(cg: ChannelGraph, node: ir.Node) -> None:
    x = node.inputs[0]
    m = cg.maps.get(x)
    if m is None:
        return
    rank = len(x.shape)
    axes = _axes(node, rank)
    if axes is None:
        axes = [] if node.attributes.get_int("noop_with_empty_axes", 0) else list(range(rank))
    if m.axis in axes:
        return _unchanged_axis(cg, node, False, "reduces over its channel axis")
    keep = node.attributes.get_int("keepdims", 1)
    axis = m.axis if keep else m.axis - sum(a < m.axis for a in axes)
    cg.maps[node.outputs[0]] = ChannelMap(axis, m.elems)


def squeeze(cg: ChannelGraph, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    m = cg.maps.get(x)
    if m is None:
        return
    rank = len(x.shape)
    if node.op_type == "Squeeze":
        axes = _axes(node, rank) or [i for i, d in enumerate(x.shape) if d == 1]
        if m.axis in axes:
            return _unchanged_axis(cg, node, False, "squeezes its channel axis")
        axis = m.axis - sum(a < m.axis for a in axes)
    else:
        axes = sorted(_axes(node, len(out.shape)) or [])
        axis = m.axis
        for a in axes:
            if a <= axis:
                axis += 1
    cg.maps[out] = ChannelMap(axis, m.elems)


def softmax(cg: ChannelGraph, node: ir.Node) -> None:
    x = node.inputs[0]
    m = cg.maps.get(x)
    if m is None:
        return
    rank = len(x.shape)
    axis = node.attributes.get_int("axis", -1)
    axis = axis + rank if axis < 0 else axis
    _unchanged_axis(cg, node, axis != m.axis, "normalizes over its channel axis")


UNARY = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu",
         "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Abs", "Neg", "Sqrt", "Exp", "Log", "Identity", "Dropout",
         "Cast", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "ThresholdedRelu", "Not", "IsNaN")
CHANNEL_FIRST = ("BatchNormalization", "InstanceNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
                 "GlobalMaxPool", "LpPool", "GlobalLpPool")
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu", "Where", "Equal", "Greater",
               "Less", "And", "Or")
REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceSumSquare", "ReduceLogSumExp")

RULES: dict[str, Rule] = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul,
    **{op: passthrough for op in UNARY}, **{op: channel_first for op in CHANNEL_FIRST},
    **{op: elementwise for op in ELEMENTWISE}, **{op: reduce for op in REDUCE},
    "QuantizeLinear": quantize, "DequantizeLinear": quantize, "Resize": resize, "Upsample": resize, "Pad": pad,
    "Concat": concat, "Split": split, "Slice": slice_, "Flatten": flatten, "Reshape": reshape,
    "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": squeeze, "Softmax": softmax, "LogSoftmax": softmax,
    "Hardmax": softmax,
}
