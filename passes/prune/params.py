"""The constants behind an op's parameter inputs, read and sliced along a channel axis.

A parameter is an initializer, or (after the quantize pass) the output of a DequantizeLinear
whose inputs are all constants: an int8 weight with its scale and zero point. Slicing such a
weight along an axis slices the int8 data, and the scale and zero point too when the
DequantizeLinear is per-channel on that axis; per-tensor scales stay as they are.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def dequantizer(value: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear producing `value` from constants only, or None."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return None
    if all(v is None or v.const_value is not None for v in node.inputs):
        return node
    return None


def dq_axis(node: ir.Node, rank: int) -> int:
    axis = node.attributes.get_int("axis", 1)
    return axis + rank if axis < 0 else axis


def weight(value: ir.Value | None) -> np.ndarray | None:
    """A parameter's float value: the constant, or the dequantized constant (for ranking and repair)."""
    array = constant(value)
    if array is not None:
        return array
    dq = dequantizer(value)
    if dq is None:
        return None
    x = constant(dq.inputs[0]).astype(np.float64)
    scale = constant(dq.inputs[1]).astype(np.float64)
    zero = constant(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] is not None else np.zeros_like(scale)
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[dq_axis(dq, x.ndim)] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((x - zero.astype(np.float64)) * scale).astype(np.float32)


def is_parameter(value: ir.Value | None) -> bool:
    return value is not None and (value.const_value is not None or dequantizer(value) is not None)


def set_constant(graph: ir.Graph, owner: ir.Node, index: int, array: np.ndarray) -> None:
    """Give input `index` of `owner` the constant `array`: in place when `owner` is its only user."""
    value = owner.inputs[index]
    array = np.ascontiguousarray(array)
    shared = len(value.uses()) > 1 or value.is_graph_output() or not value.is_initializer()
    if shared:
        name = _fresh_name(graph, f"{value.name}.pruned")
        new = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(value.dtype),
                       const_value=ir.Tensor(array, name=name))
        graph.register_initializer(new)
        owner.replace_input_with(index, new)
        if not value.uses() and value.is_initializer() and not value.is_graph_output():
            del graph.initializers[value.name]
        return
    value.const_value = ir.Tensor(array, name=value.name)
    value.shape = ir.Shape(array.shape)


def take(graph: ir.Graph, owner: ir.Node, index: int, axis: int, keep: np.ndarray) -> None:
    """Keep only the positions `keep` along `axis` of parameter input `index` of `owner`."""
    value = owner.inputs[index]
    array = constant(value)
    if array is not None:
        set_constant(graph, owner, index, np.take(array, keep, axis=axis))
        return
    dq = dequantizer(value)
    if dq is None:
        raise ValueError(f"input {index} of '{owner.name}' is not a constant parameter")
    rank = len(dq.inputs[0].shape)
    per_channel = dq.inputs[1].const_value.size > 1 and dq_axis(dq, rank) == axis
    take(graph, dq, 0, axis, keep)
    if per_channel:
        for i in (1, 2):
            if i < len(dq.inputs) and dq.inputs[i] is not None:
                take(graph, dq, i, 0, keep)
    shape = list(value.shape)
    shape[axis] = len(keep)
    value.shape = ir.Shape(shape)


def add_input_constant(graph: ir.Graph, owner: ir.Node, index: int, array: np.ndarray, name: str) -> None:
    """Append (or set) an optional constant input of `owner`, such as a Conv bias it did not have."""
    name = _fresh_name(graph, name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.Tensor(np.ascontiguousarray(array), name=name))
    graph.register_initializer(value)
    if len(owner.inputs) <= index:
        owner.resize_inputs(index + 1)
    owner.replace_input_with(index, value)


def _fresh_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers) | {v.name for v in graph.inputs} | {v.name for n in graph for v in n.outputs}
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}{i}"
    return name
