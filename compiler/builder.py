"""Make new IR nodes and constants the way rewrites need them: annotated, typed, opset-aware.

Every pass that creates or clones nodes (intra-layer splits, canonicalization, BatchNorm
folding, communication insertion, later quantization) builds them here, so three rules live in
one place: a new node carries the annotations of the node it stands for (`CARRIED`: placement,
and the stage once the program is staged), every new value gets its shape and dtype at once,
and nodes are inserted where topological order holds. `Program.verify()` then holds right after
a rewrite without re-running shape inference or re-deriving a stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from .annotations import CDC, PLACEMENT, PRUNE, QUANTIZE, STAGE, Placement, placement_of, stage_of

if TYPE_CHECKING:
    from .program import Program

CARRIED: tuple[str, ...] = (PLACEMENT, STAGE, QUANTIZE, PRUNE, CDC)
"""Annotations that follow a rewrite to the nodes that replace or copy a node: where it runs.

Not carried: `edgec.split` (a request the split-layer pass consumes; its parts must not be split
again) and `edgec.boundary` (it marks a value, not a node). A pass that adds a node annotation
that must survive rewrites (a quantization, pruning or CDC spec) adds its key here.
"""


def annotate_like(node: ir.Node, template: ir.Node | Mapping[str, object]) -> ir.Node:
    """Copy the `CARRIED` annotations of `template` (a node or a meta mapping) onto `node`."""
    meta = template.meta if isinstance(template, ir.Node) else template
    for key in CARRIED:
        if key in meta:
            node.meta[key] = meta[key]
    return node


def same_place(a: ir.Node, b: ir.Node) -> bool:
    """Whether two nodes run in the same place: same placement (device, resource, threads) and stage."""
    pa, pb = placement_of(a), placement_of(b)
    return (pa.key if pa else None) == (pb.key if pb else None) and stage_of(a) == stage_of(b)


def stage_placement(program: Program, stage: int) -> Placement:
    """The placement every node of `stage` has."""
    s = program.stages[stage]
    return Placement(s.device, s.resource, s.threads)


class Builder:
    """Inserts nodes into `graph` right before `anchor` (the graph's start when None), which keeps
    topological order when the anchor is the first consumer; they are annotated like `like`
    (default: the anchor), a placement given to a method replacing the template's.

    A stage is carried only with a placement it agrees with: a node placed elsewhere than its
    template gets no stage, so a staged program's `verify()` names it instead of hiding a
    wrong stage. `Builder.in_stage` builds into one stage of a staged program.
    """

    def __init__(self, graph: ir.Graph, anchor: ir.Node | None, prefix: str, *, like: ir.Node | None = None) -> None:
        self.graph = graph
        self.anchor = anchor
        self.prefix = prefix
        template = like if like is not None else anchor
        meta = template.meta if template is not None else {}
        self.template: dict[str, object] = {k: meta[k] for k in CARRIED if k in meta}
        self.opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 13))

    @classmethod
    def in_stage(cls, program: Program, stage: int, anchor: ir.Node | None = None, prefix: str = "") -> Builder:
        """A builder whose nodes belong to `stage` of the staged `program` (placed like the stage)."""
        builder = cls(program.graph, anchor, prefix)
        builder.template = {PLACEMENT: stage_placement(program, stage), STAGE: stage}
        return builder

    def name(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def annotate(self, node: ir.Node, placement: Placement | None = None, like: ir.Node | None = None) -> ir.Node:
        """Give `node` the annotations of `like` (default: the builder's template), placed on `placement` if given."""
        template = dict(self.template) if like is None else {k: like.meta[k] for k in CARRIED if k in like.meta}
        if placement is not None:
            old = template.get(PLACEMENT)
            if not isinstance(old, Placement) or old.key != placement.key:
                template.pop(STAGE, None)
            template[PLACEMENT] = placement
        return annotate_like(node, template)

    def adopt(self, node: ir.Node, *, after: ir.Node | None = None) -> ir.Node:
        """Annotate a node made elsewhere like the template and insert it before the anchor, or right after `after`."""
        return self._insert(self.annotate(node), after)

    def _insert(self, node: ir.Node, after: ir.Node | None = None) -> ir.Node:
        if after is not None:
            self.graph.insert_after(after, node)
        elif self.anchor is not None:
            self.graph.insert_before(self.anchor, node)
        elif len(self.graph):
            self.graph.insert_before(next(iter(self.graph)), node)
        else:
            self.graph.append(node)
        return node

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
        placement: Placement | None = None,
        attributes: Sequence[ir.Attr] = (),
        *,
        like: ir.Node | None = None,
        domain: str = "",
    ) -> ir.Value:
        """One node with one output of `shape` and `dtype`, named `prefix/suffix`, annotated (see `annotate`)."""
        name = self.name(suffix)
        out = ir.Value(name=name, shape=ir.Shape(list(shape)), type=ir.TensorType(dtype))
        node = ir.Node(domain, op_type, list(inputs), list(attributes), outputs=[out], name=name)
        self._insert(self.annotate(node, placement, like))
        return out

    def clone(self, original: ir.Node, suffix: str, inputs: Sequence[ir.Value | None], shape: Sequence[int],
              placement: Placement | None = None, attributes: dict[str, ir.Attr] | None = None) -> ir.Value:
        """A copy of `original` (same op, attributes — some replaced — and annotations) on new inputs."""
        attrs = dict(original.attributes)
        attrs.update(attributes or {})
        return self.op(original.op_type, suffix, inputs, shape, original.outputs[0].dtype, placement, list(attrs.values()),
                       like=original, domain=original.domain)

    def slice(self, suffix: str, x: ir.Value, axes: Sequence[int], starts: Sequence[int], ends: Sequence[int],
              placement: Placement | None = None) -> ir.Value:
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

    def concat(self, suffix: str, parts: Sequence[ir.Value], axis: int, placement: Placement | None = None) -> ir.Value:
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        return self.op("Concat", suffix, parts, shape, parts[0].dtype, placement, [ir.AttrInt64("axis", axis)])

    def sum(self, suffix: str, parts: Sequence[ir.Value], placement: Placement | None = None) -> ir.Value:
        """The elementwise sum of `parts` (broadcasting) as a chain of Add, the canonical form of `Sum`
        (TVM imports `Sum` as stack + sum); one part is returned as it is."""
        total = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            shape = np.broadcast_shapes(tuple(total.shape), tuple(part.shape))
            name = suffix if i == len(parts) - 1 else f"{suffix}.{i}"
            total = self.op("Add", name, [total, part], shape, total.dtype, placement)
        return total


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
