"""Typed per-node annotations, stored under `node.meta["edgec.*"]`.

`node.meta` is onnx-ir's scratch space: it is not serialized, so annotations never leak into
written models by accident. What must reach a file goes through the manifest instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx_ir as ir

if TYPE_CHECKING:
    from .diagnostics import SourceSpan

PLACEMENT = "edgec.placement"
STAGE = "edgec.stage"
BOUNDARY = "edgec.boundary"

EDGEC_DOMAIN = "edgec"


@dataclass(frozen=True)
class Placement:
    """Where a node runs: a device, one of its resources, and an optional thread count."""

    device: str
    resource: str = "cpu"
    threads: int | None = None
    span: SourceSpan | None = None

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.device, self.resource, self.threads)

    def __str__(self) -> str:
        threads = f" threads {self.threads}" if self.threads else ""
        return f"{self.device}.{self.resource}{threads}"


def placement_of(node: ir.Node) -> Placement | None:
    return node.meta.get(PLACEMENT)


def stage_of(node: ir.Node) -> int | None:
    return node.meta.get(STAGE)


def is_edgec_op(node: ir.Node, op_type: str | None = None) -> bool:
    return node.domain == EDGEC_DOMAIN and (op_type is None or node.op_type == op_type)


SPLIT = "edgec.split"


@dataclass(frozen=True, eq=False)
class SplitSpec:
    """An intra-layer split request from one `split` statement (shared by all nodes it selects).

    `parts` placements in part order; `sizes` is filled by the pass from `ratio`. Identity
    matters: a spatial split fuses exactly the nodes that carry the same spec object.
    """

    kind: str
    parts: tuple[Placement, ...]
    grid: tuple[int, int] | None = None
    ratio: tuple[int, ...] | None = None
    merge: Placement | None = None
    span: SourceSpan | None = None

    @property
    def count(self) -> int:
        return len(self.parts)


def split_of(node: ir.Node) -> SplitSpec | None:
    return node.meta.get(SPLIT)
