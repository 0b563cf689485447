"""Make new IR nodes and constants the way rewrites need them: placed, typed, opset-aware.

Rewrites (intra-layer splits, later quantization) create many small nodes; doing it here keeps
every pass from repeating the same boilerplate and keeps two rules in one place: every new
node carries a placement, and every new value gets its shape and dtype at once, so
`Program.verify()` holds right after the rewrite without re-running shape inference.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx_ir as ir

from .annotations import PLACEMENT, Placement


class Builder:
    """Appends nodes to `graph` right before `anchor` (keeps topological order)."""

    def __init__(self, graph: ir.Graph, anchor: ir.Node, prefix: str) -> None:
        self.graph = graph
        self.anchor = anchor
        self.prefix = prefix
        self.opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 13))

    def name(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def const(self, suffix: str, array: np.ndarray) -> ir.Value:
        name = self.name(suffix)
        array = np.ascontiguousarray(array)
        value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                         const_value=ir.Tensor(array, name=name))
        self.graph.register_initializer(value)
        return value

    def op(
        self,
        op_type: str,
        suffix: str,
        inputs: Sequence[ir.Value | None],
        shape: Sequence[int],
        dtype: ir.DataType,
        placement: Placement,
        attributes: Sequence[ir.Attr] = (),
    ) -> ir.Value:
        name = self.name(suffix)
        out = ir.Value(name=name, shape=ir.Shape(list(shape)), type=ir.TensorType(dtype))
        node = ir.Node("", op_type, list(inputs), list(attributes), outputs=[out], name=name)
        node.meta[PLACEMENT] = placement
        self.graph.insert_before(self.anchor, node)
        return out

    def clone(self, original: ir.Node, suffix: str, inputs: Sequence[ir.Value | None], shape: Sequence[int],
              placement: Placement, attributes: dict[str, ir.Attr] | None = None) -> ir.Value:
        """A copy of `original` (same op and attributes, some replaced) on new inputs."""
        attrs = dict(original.attributes)
        attrs.update(attributes or {})
        return self.op(original.op_type, suffix, inputs, shape, original.outputs[0].dtype, placement, list(attrs.values()))

    def slice(self, suffix: str, x: ir.Value, axes: Sequence[int], starts: Sequence[int], ends: Sequence[int],
              placement: Placement) -> ir.Value:
        """Slice `x`; attributes before opset 10, constant inputs after (the op changed)."""
        shape = list(x.shape)
        for axis, start, end in zip(axes, starts, ends):
            shape[axis] = end - start
        if self.opset < 10:
            attrs = [ir.AttrInt64s("axes", list(axes)), ir.AttrInt64s("starts", list(starts)), ir.AttrInt64s("ends", list(ends))]
            return self.op("Slice", suffix, [x], shape, x.dtype, placement, attrs)
        args = [self.const(f"{suffix}.{k}", np.array(v, dtype=np.int64)) for k, v in
                (("starts", starts), ("ends", ends), ("axes", axes))]
        return self.op("Slice", suffix, [x, *args], shape, x.dtype, placement)

    def concat(self, suffix: str, parts: Sequence[ir.Value], axis: int, placement: Placement) -> ir.Value:
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        return self.op("Concat", suffix, parts, shape, parts[0].dtype, placement, [ir.AttrInt64("axis", axis)])

    def sum(self, suffix: str, parts: Sequence[ir.Value], placement: Placement) -> ir.Value:
        return self.op("Sum", suffix, parts, list(parts[0].shape), parts[0].dtype, placement)


def part_sizes(total: int, count: int, ratio: Sequence[int] | None) -> list[int]:
    """Split `total` units into `count` parts proportional to `ratio` (largest remainder), each ≥ 1."""
    weights = np.array(ratio if ratio else [1] * count, dtype=np.float64)
    exact = total * weights / weights.sum()
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: total - sizes.sum()]:
        sizes[i] += 1
    return [int(s) for s in sizes]


def bounds(sizes: Sequence[int]) -> list[tuple[int, int]]:
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
