"""The dependency graph of tied channels (DepGraph's idea, on the onnx-ir graph).

Every channel of every tensor that has a channel axis gets an element id; a Conv, Gemm or
MatMul creates fresh elements for its output channels (a *source*), and the rules in
`channel_rules.py` say how channels flow through every other op: through BatchNorm,
activations and pooling unchanged, tied together by a residual Add/Mul/Sub (union), laid end
to end by a Concat, repeated in blocks by a Flatten. A union-find merges tied elements into
*classes*: a class is the unit that is removed — everywhere at once, or not at all.

A tensor whose channels go where they cannot be removed (a graph output, a Reshape that mixes
channels, an op without a rule) *blocks* its elements, with a reason the pass reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir


@dataclass
class ChannelMap:
    """Which element each position along `axis` of a tensor is."""

    axis: int
    elems: np.ndarray


@dataclass
class Source:
    """A layer whose output channels are fresh elements: a Conv, Gemm or MatMul with constant weights."""

    node: ir.Node
    elems: np.ndarray


@dataclass
class ChannelGraph:
    parent: list[int] = field(default_factory=list)
    maps: dict[ir.Value, ChannelMap] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    blocks: list[tuple[np.ndarray, str]] = field(default_factory=list)

    def fresh(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, e: int) -> int:
        parent = self.parent
        root = e
        while parent[root] != root:
            root = parent[root]
        while parent[e] != root:
            parent[e], e = root, parent[e]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def block(self, value: ir.Value, reason: str) -> None:
        found = self.maps.get(value)
        if found is not None:
            self.blocks.append((found.elems, reason))

    def roots(self, elems: np.ndarray) -> np.ndarray:
        return np.fromiter((self.find(e) for e in elems.tolist()), dtype=np.int64, count=len(elems))

    def blocked(self) -> dict[int, str]:
        """Blocked class roots, each with the first reason found."""
        out: dict[int, str] = {}
        for elems, reason in self.blocks:
            for root in np.unique(self.roots(elems)).tolist():
                out.setdefault(root, reason)
        return out

    def kept(self, value: ir.Value, removed: set[int]) -> np.ndarray | None:
        """Positions along the channel axis of `value` that survive, or None if it has no channel map."""
        found = self.maps.get(value)
        if found is None:
            return None
        roots = self.roots(found.elems)
        return np.array([i for i, r in enumerate(roots.tolist()) if r not in removed], dtype=np.int64)


def build(graph: ir.Graph) -> ChannelGraph:
    """Walk the graph in topological order, applying each op's channel rule; graph outputs block."""
    from .channel_rules import RULES, opaque

    cg = ChannelGraph()
    for node in graph:
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        (rule or opaque)(cg, node)
    for value in graph.outputs:
        cg.block(value, f"'{value.name}' is a model output")
    return cg
