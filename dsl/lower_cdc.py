"""Lower `cdc` statements: a `CdcRequest` on every output/filter-split linear layer each one selects.

Checked here, at the statement: the parity count is one the code supports, the targets are
known devices and resources (one target, or one per parity part), and every selected node is
a Gemm, MatMul or Conv that a `split ... by output`/`by filter` statement splits, into at most
`MAX_PARTS` parts, with a code conditioned well enough for float32 (`MAX_CONDITION`), and
neither pruned nor quantized (either, applied after encoding, would change the parts but not
the parity). Whether the parts can be coded (constant weights, ungrouped conv) is checked by
the cdc-encode pass.
"""

from __future__ import annotations

from ..compiler.annotations import PRUNE, QUANTIZE, QUANTIZE_REQUESTS, split_of
from ..compiler.diagnostics import PlanError
from ..compiler.program import Program
from ..compiler.split_rules import canonical_kind
from ..passes.cdc.code import MAX_CONDITION, MAX_PARITY, MAX_PARTS, worst_condition
from ..passes.cdc.request import CDC, CdcRequest
from . import ast
from .lower import _target, plan_names
from .selectors import resolve

LAYERS = ("Conv", "Gemm", "MatMul")


def lower_cdcs(plan: ast.Plan, program: Program) -> None:
    names_of = plan_names(program)
    nodes = {n.name: n for n in program.nodes()}
    coded_by: dict[str, ast.CdcStmt] = {}
    for stmt in plan.cdcs:
        if not 1 <= stmt.parity <= MAX_PARITY:
            raise PlanError(f"parity {stmt.parity} is not supported (1..{MAX_PARITY})", stmt.span)
        targets = [_target(t, program, None) for t in stmt.targets]
        if len(targets) not in (1, stmt.parity):
            raise PlanError(f"{len(targets)} targets for {stmt.parity} parity part(s)", stmt.span,
                            hint="give one target for all parity parts, or one per parity part")
        placements = tuple(targets * stmt.parity if len(targets) == 1 else targets)
        request = CdcRequest(stmt.parity, placements, stmt.span)
        for name in resolve(stmt.selector, names_of, warn=program.warnings.append, purpose="cdc"):
            node = nodes.get(name)
            if node is None:
                continue
            spec = split_of(node)
            if node.op_type not in LAYERS or spec is None or canonical_kind(node.op_type, spec.kind) != "output":
                how = "not split" if spec is None else f"split by {spec.kind}"
                raise PlanError(f"cdc codes a Gemm, MatMul or Conv split by output/filter; "
                                f"{node.op_type} '{name}' is {how}",
                                stmt.selector.span,
                                hint="add `split NODE by output into K on ...` (by filter for a Conv)")
            if not 2 <= spec.count <= MAX_PARTS:
                raise PlanError(f"cdc codes 2..{MAX_PARTS} parts; '{name}' has {spec.count}", stmt.selector.span)
            if (cond := worst_condition(spec.count, stmt.parity)) > MAX_CONDITION:
                raise PlanError(f"{spec.count} parts with {stmt.parity} parities: the code's worst condition number is "
                                f"{cond:.0f}, too large for float32 recovery within 1e-4", stmt.span,
                                hint="use fewer parity parts, or split into fewer parts")
            if name in coded_by:
                raise PlanError(f"layer '{name}' is already coded at {coded_by[name].span}", stmt.selector.span)
            devices = {p.device for p in (*spec.parts, *placements)}
            quantized = [r for r in program.model.meta.get(QUANTIZE_REQUESTS) or [] if r.device in devices]
            if QUANTIZE in node.meta or quantized:
                raise PlanError(f"layer '{name}' is both quantized and coded; cdc codes float layers only so far",
                                stmt.selector.span)
            if PRUNE in node.meta:
                raise PlanError(f"layer '{name}' is both pruned and coded; cdc does not support that yet",
                                stmt.selector.span)
            coded_by[name] = stmt
            node.meta[CDC] = request
