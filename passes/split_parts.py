"""What every intra-layer split rewrite shares: its context, and the per-part cost report.

A rewrite turns one node (or a spatial chain) into parts placed on the split's targets plus a
merge on the merge device. It builds through `Builder`, slices activations on the device that
produces them (so only the slice travels), and records for each part the bytes it receives,
sends and the extra halo bytes, which the manifest and `edgec show` report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ..compiler.annotations import Placement, SplitSpec, placement_of, split_of
from ..compiler.builder import Builder, bounds, part_sizes
from ..compiler.diagnostics import PlanError
from ..compiler.split_rules import canonical_kind
from ..compiler.tensor_types import nbytes as tensor_bytes


@dataclass
class PartReport:
    device: str
    resource: str
    receives: int
    sends: int
    halo: int = 0


@dataclass
class SplitReport:
    layer: str
    op: str
    kind: str
    merge: str
    parts: list[PartReport] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"layer": self.layer, "op": self.op, "kind": self.kind, "merge": self.merge, "nodes": self.nodes,
                "parts": [vars(p) for p in self.parts]}


def nbytes(value: ir.Value) -> int:
    """Bytes of a (statically shaped) value."""
    return tensor_bytes(value.shape, value.dtype)


@dataclass
class SplitContext:
    """One layer being split: its node, the request, and where the pieces go."""

    graph: ir.Graph
    node: ir.Node
    spec: SplitSpec
    merge_at: Placement
    builder: Builder
    report: SplitReport

    @classmethod
    def for_node(cls, graph: ir.Graph, node: ir.Node, spec: SplitSpec, last: ir.Node | None = None) -> "SplitContext":
        merge_at = spec.merge or _consumer_placement(last or node) or spec.parts[0]
        report = SplitReport(node.name, node.op_type, spec.kind, f"{merge_at.device}.{merge_at.resource}")
        return cls(graph, node, spec, merge_at, Builder(graph, node, node.name), report)

    @property
    def kind(self) -> str | None:
        """The split kind in the table's terms (`output`, `input`, `spatial`): plan aliases resolved."""
        return canonical_kind(self.node.op_type, self.spec.kind)

    def fail(self, reason: str, hint: str | None = None) -> PlanError:
        return PlanError(f"cannot split {self.node.op_type} '{self.node.name}' by {self.spec.kind}: {reason}",
                         self.spec.span, hint=hint)

    def sizes(self, total: int, what: str) -> list[tuple[int, int]]:
        if self.spec.count > total:
            raise self.fail(f"{self.spec.count} parts but only {total} {what}")
        return bounds(part_sizes(total, self.spec.count, self.spec.ratio))

    def feed_placement(self, value: ir.Value, part: Placement) -> Placement:
        """Slices of `value` run where it is produced; graph inputs are sliced by each part."""
        producer = value.producer()
        return (placement_of(producer) if producer is not None else None) or part

    def weight(self, index: int) -> np.ndarray | None:
        if index >= len(self.node.inputs) or self.node.inputs[index] is None:
            return None
        value = self.node.inputs[index]
        if value.const_value is None:
            raise self.fail(f"input {index} ('{value.name}') is not a constant weight")
        return value.const_value.numpy()

    def add_part(self, placement: Placement, receives: int, sends: int, halo: int = 0) -> None:
        self.report.parts.append(PartReport(placement.device, placement.resource, receives, sends, halo))


def _consumer_placement(node: ir.Node) -> Placement | None:
    for use in node.outputs[0].uses():
        placement = placement_of(use.node)
        if placement is None and (spec := split_of(use.node)) is not None:
            placement = spec.parts[0]
        if placement is not None:
            return placement
    return placement_of(node)


@dataclass
class ConcatParts:
    """Parts whose outputs are slices of the result along `axis` (`ranges`), merged by Concat.

    Returned instead of a merged value so the pass can let channel-wise consumers (BatchNorm,
    activations, pooling) follow the split into the parts before the merge.
    """

    values: list[ir.Value]
    axis: int
    ranges: list[tuple[int, int]]
