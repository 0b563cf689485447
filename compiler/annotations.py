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
PRUNE = "edgec.prune"
CDC = "edgec.cdc"
"""A `CdcRequest` (passes/cdc/request.py) from the `cdc` statement that codes the layer; carried to its split parts
and merge, where the cdc-encode pass consumes it."""
CDC_LAYERS = "edgec.cdc-layers"
"""On `model.meta`: one `CdcLayer` (passes/cdc/record.py) per coded layer, written by the cdc-encode pass."""
"""A `PruneRequest` (passes/prune/request.py) from the `prune` statement that selects the node; carried to split parts."""


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


TARGET_BACKENDS = "edgec.target-backends"
"""On `model.meta`: the names of the backends the compile writes, for passes whose rewrite depends on
the engine that runs it (the quantize pass's activation type)."""

QUANTIZE = "edgec.quantize"
QUANTIZE_REQUESTS = "edgec.quantize-requests"
"""On `model.meta`: every `quantize` statement's `QuantizeRequest`, in plan order (devices and `wire`)."""


@dataclass(frozen=True, eq=False)
class QuantizeRequest:
    """One `quantize` statement, lowered: what to quantize (`device`, the nodes carrying it under
    `QUANTIZE`, or the stage boundaries when `wire`), to what, and with which calibration.

    `calibrate` is the calibration directory, resolved against the plan's folder and checked to
    hold data for every model input; None only for `wire fp16`, which needs no ranges.
    """

    dtype: str
    granularity: str = "per_channel"
    calibrate: str | None = None
    method: str = "minmax"
    correct_bias: bool = False
    equalize: bool = False
    device: str | None = None
    wire: bool = False
    span: SourceSpan | None = None


def quantize_request_of(node: ir.Node) -> QuantizeRequest | None:
    return node.meta.get(QUANTIZE)


def calibration_stem(input_name: str) -> str:
    """The file name (no suffix) of an input's calibration samples: `/` and `:` become `_`."""
    return input_name.replace("/", "_").replace(":", "_")
