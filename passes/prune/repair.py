"""Repair what removing channels disturbs, from calibration data and without any fine-tuning.

Bias compensation: a consumer (Conv, Gemm, MatMul+bias) that loses input channel j loses, on
average, `W[:, j] · mean(x_j)` — for a channel behind BatchNorm and ReLU that is the constant
act(β) plus whatever the channel carried. That expected contribution is added to the
consumer's bias (measured on the model before the statement), so the consumer's output mean
is unchanged to first order (exact for 1x1 convolutions and Gemm; a k×k convolution's border
positions see padding instead and keep a small error).

BatchNorm re-estimation: every BatchNorm downstream of a changed consumer gets the mean and
variance of its new input, measured on the pruned model: one pass over the data per depth
level (`levels`), each measured behind the levels already repaired. (Updating all of them
from one pass is not enough: a deep BatchNorm would be fitted to inputs its upstream
BatchNorms are about to change; on the trained CNN that costs tens of points.)
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from . import params
from .calibration import Stats, collect
from .channels import ChannelGraph

LINEAR = ("Conv", "Gemm", "MatMul")


def shrunk_consumers(cg: ChannelGraph, graph: ir.Graph, removed: set[int]) -> list[tuple[ir.Node, np.ndarray]]:
    """(layer, kept input positions) for every Conv/Gemm/MatMul that loses input channels."""
    out = []
    for node in graph:
        if node.op_type not in LINEAR or node.attributes.get_int("group", 1) != 1:
            continue
        m = cg.maps.get(node.inputs[0])
        if m is None or params.weight(node.inputs[1]) is None:
            continue
        keep = cg.kept(node.inputs[0], removed)
        if len(keep) < len(m.elems):
            out.append((node, keep))
    return out


def _in_axis(node: ir.Node) -> int:
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return 1
    return 0 if node.op_type in ("Gemm", "MatMul") else 1


def compensations(consumers: list[tuple[ir.Node, np.ndarray]], stats: dict[str, Stats]) -> dict[str, np.ndarray]:
    """Per consumer name, the bias change over its full output channels (computed before the rewrite)."""
    out = {}
    for node, keep in consumers:
        found = stats.get(node.inputs[0].name)
        if found is None:
            continue
        w = params.weight(node.inputs[1]).astype(np.float64)
        axis = _in_axis(node)
        gone = np.setdiff1d(np.arange(w.shape[axis]), keep)
        lost = np.take(w, gone, axis=axis)
        means = found.mean[gone]
        if node.op_type == "Conv":
            out[node.name] = lost.reshape(lost.shape[0], lost.shape[1], -1).sum(-1) @ means
        else:
            out[node.name] = np.tensordot(means, lost, axes=([0], [axis]))
    return out


def apply_compensations(graph: ir.Graph, cg: ChannelGraph, removed: set[int], deltas: dict[str, np.ndarray]) -> list[str]:
    """Add each delta (restricted to the kept output channels) to the layer's bias; the layers changed."""
    done = []
    for node in graph:
        delta = deltas.get(node.name)
        if delta is None or node.op_type == "MatMul":
            continue
        keep = cg.kept(node.outputs[0], removed)
        if keep is not None:
            delta = delta[keep]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        dtype = node.outputs[0].dtype.numpy()
        if bias is None:
            params.add_input_constant(graph, node, 2, delta.astype(dtype), f"{node.name}.bias")
        elif bias.const_value is not None and bias.shape is not None and list(bias.shape) in ([len(delta)], [1, len(delta)]):
            current = bias.const_value.numpy()
            params.set_constant(graph, node, 2, (current + delta.reshape(current.shape)).astype(current.dtype))
        else:
            continue
        done.append(node.name)
    return done


def affected_batchnorms(graph: ir.Graph, changed: list[ir.Node]) -> list[ir.Node]:
    """BatchNorms whose input depends on a layer that lost input channels."""
    dirty = {id(v) for n in changed for v in n.outputs}
    found = []
    for node in graph:
        if any(v is not None and id(v) in dirty for v in node.inputs):
            dirty.update(id(v) for v in node.outputs)
            if node.op_type == "BatchNormalization" and params.constant(node.inputs[3]) is not None:
                found.append(node)
    return found


def levels(graph: ir.Graph, nodes: list[ir.Node]) -> list[list[ir.Node]]:
    """`nodes` grouped by depth: the input of each depends only on nodes of earlier groups, so
    repairing group after group measures every node behind already repaired ones."""
    chosen = {id(n) for n in nodes}
    depth: dict[int, int] = {}
    groups: dict[int, list[ir.Node]] = {}
    for node in graph:
        level = max((depth.get(id(v), 0) for v in node.inputs if v is not None), default=0)
        if id(node) in chosen:
            level += 1
            groups.setdefault(level, []).append(node)
        for v in node.outputs:
            depth[id(v)] = level
    return [groups[k] for k in sorted(groups)]


def reestimate_batchnorms(model: ir.Model, batchnorms: list[ir.Node], batches) -> None:
    """Set each BatchNorm's mean and variance to those of its input on the calibration data (one pass)."""
    stats = collect(model, {bn.inputs[0]: 1 for bn in batchnorms}, batches())
    for bn in batchnorms:
        s = stats[bn.inputs[0].name]
        dtype = bn.inputs[3].const_value.numpy().dtype
        params.set_constant(model.graph, bn, 3, s.mean.astype(dtype))
        params.set_constant(model.graph, bn, 4, s.var.astype(dtype))
