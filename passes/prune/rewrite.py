"""Remove the chosen channel classes: every op's parameters shrink, every mapped tensor's shape too.

One small rewrite per op type (the counterpart of `channel_rules.RULES`): a Conv loses output
filters and input channels (a depthwise Conv's group count follows), a Gemm or MatMul its
rows and columns, BatchNorm its per-channel parameters, a per-channel QDQ its scales and zero
points, Split/Slice/Reshape/Resize their constant sizes. Ops whose parameters do not depend on
the channel count (activations, pooling, Concat, Flatten) only get new shapes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx_ir as ir

from . import params
from .channels import ChannelGraph

Rewrite = Callable[[ir.Graph, ChannelGraph, ir.Node, set[int]], None]


def _shrinks(keep: np.ndarray | None, full: int) -> bool:
    return keep is not None and len(keep) < full


def conv(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    x, out = node.inputs[0], node.outputs[0]
    keep_in, keep_out = cg.kept(x, removed), cg.kept(out, removed)
    cout = node.inputs[1].shape[0]
    group = node.attributes.get_int("group", 1)
    if _shrinks(keep_out, cout):
        params.take(graph, node, 1, 0, keep_out)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            params.take(graph, node, 2, 0, keep_out)
    if group == 1 and _shrinks(keep_in, x.shape[1]):
        params.take(graph, node, 1, 1, keep_in)
    if group > 1 and keep_in is not None and len(keep_in) != group:
        node.attributes["group"] = ir.AttrInt64("group", len(keep_in))


def gemm(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    x, out = node.inputs[0], node.outputs[0]
    keep_in, keep_out = cg.kept(x, removed), cg.kept(out, removed)
    trans = node.attributes.get_int("transB", 0) if node.op_type == "Gemm" else 0
    in_axis, out_axis = (1, 0) if trans else (0, 1)
    w_shape = node.inputs[1].shape
    if _shrinks(keep_out, w_shape[out_axis]):
        params.take(graph, node, 1, out_axis, keep_out)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is not None and bias.shape is not None and len(bias.shape) and bias.shape[-1] == w_shape[out_axis] > 1:
            params.take(graph, node, 2, len(bias.shape) - 1, keep_out)
    if _shrinks(keep_in, w_shape[in_axis]):
        params.take(graph, node, 1, in_axis, keep_in)


def per_channel_params(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    keep = cg.kept(node.inputs[0], removed)
    if not _shrinks(keep, node.inputs[0].shape[1]):
        return
    for i, value in enumerate(node.inputs[1:], start=1):
        if value is not None and value.shape is not None and len(value.shape) == 1 and value.shape[0] > 1:
            params.take(graph, node, i, 0, keep)


def elementwise(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    out = node.outputs[0]
    m = cg.maps.get(out)
    if m is None:
        return
    keep, rank, full = cg.kept(out, removed), len(out.shape), len(m.elems)
    if not _shrinks(keep, full):
        return
    for i, value in enumerate(node.inputs):
        if value is None or value in cg.maps or not params.is_parameter(value):
            continue
        aligned = m.axis - (rank - len(value.shape))
        if aligned >= 0 and value.shape[aligned] == full:
            params.take(graph, node, i, aligned, keep)


def quantize(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    x = node.inputs[0]
    m = cg.maps.get(x)
    scale = node.inputs[1]
    if m is None or scale.const_value is None or scale.const_value.size <= 1:
        return
    if params.dq_axis(node, len(x.shape)) != m.axis:
        return
    keep = cg.kept(x, removed)
    if _shrinks(keep, len(m.elems)):
        for i in (1, 2):
            if i < len(node.inputs) and node.inputs[i] is not None:
                params.take(graph, node, i, 0, keep)


def resize(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    m = cg.maps.get(node.inputs[0])
    if m is None or len(node.inputs) < 4 or node.inputs[3] is None:
        return
    sizes = params.constant(node.inputs[3]).copy()
    sizes[m.axis] = len(cg.kept(node.inputs[0], removed))
    params.set_constant(graph, node, 3, sizes)


def split(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    m = cg.maps.get(node.inputs[0])
    rank = len(node.inputs[0].shape)
    axis = node.attributes.get_int("axis", 0)
    if m is None or (axis + rank if axis < 0 else axis) != m.axis:
        return
    sizes = np.array([len(cg.kept(out, removed)) for out in node.outputs], dtype=np.int64)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        params.set_constant(graph, node, 1, sizes)
    elif "split" in node.attributes:
        node.attributes["split"] = ir.AttrInt64s("split", sizes.tolist())
    elif len(set(sizes.tolist())) > 1:
        params.add_input_constant(graph, node, 1, sizes, f"{node.name}.split")


def slice_(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    x = node.inputs[0]
    m = cg.maps.get(x)
    if m is None or cg.maps.get(node.outputs[0]) is m:
        return
    rank, size = len(x.shape), len(m.elems)
    starts, ends = (params.constant(node.inputs[i]).copy() for i in (1, 2))
    axes = params.constant(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
    axes = [int(a) + rank if a < 0 else int(a) for a in (axes if axes is not None else range(len(starts)))]
    i = axes.index(m.axis)
    lo, hi = (max(0, min(size, int(b) + size if b < 0 else int(b))) for b in (starts[i], ends[i]))
    keep = cg.kept(x, removed)
    starts[i], ends[i] = int(np.sum(keep < lo)), int(np.sum(keep < hi))
    params.set_constant(graph, node, 1, starts)
    params.set_constant(graph, node, 2, ends)


def reshape(graph: ir.Graph, cg: ChannelGraph, node: ir.Node, removed: set[int]) -> None:
    out = node.outputs[0]
    m = cg.maps.get(out)
    if m is None:
        return
    shape = params.constant(node.inputs[1]).copy()
    if shape[m.axis] > 0:
        shape[m.axis] = len(cg.kept(out, removed))
        params.set_constant(graph, node, 1, shape)


REWRITES: dict[str, Rewrite] = {
    "Conv": conv, "Gemm": gemm, "MatMul": gemm, "BatchNormalization": per_channel_params,
    "InstanceNormalization": per_channel_params, "QuantizeLinear": quantize, "DequantizeLinear": quantize,
    "Resize": resize, "Split": split, "Slice": slice_, "Reshape": reshape,
    **{op: elementwise for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu", "Where")},
}


def remove(graph: ir.Graph, cg: ChannelGraph, removed: set[int]) -> None:
    """Rewrite every node's parameters for the removed classes, then shrink every mapped tensor."""
    if not removed:
        return
    for node in list(graph):
        rewrite = REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rewrite is not None:
            rewrite(graph, cg, node, removed)
    for value, m in cg.maps.items():
        keep = cg.kept(value, removed)
        if len(keep) != len(m.elems):
            shape = list(value.shape)
            shape[m.axis] = len(keep)
            value.shape = ir.Shape(shape)
