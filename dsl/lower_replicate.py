"""Lower `replicate` statements: a `ReplicateRequest` per statement, for the split pass to apply.

Checked here, at the statement, whatever needs the model and platform but not the stages:
known devices and resources for every target (two or more, none twice: `plan_builder.py`), one
resource kind for all replicas (replicas run one sub-model compiled once; a cpu and a gpu
replica would need two compilations with different numerics), no node replicated twice, and no
node that a `split` statement splits (its parts are stages of their own on their own targets)
or that `cdc` codes. A device `quantize` statement must cover every replica's device or none,
so all replicas run the same quantized or float sub-model. Whether the selection is whole
stages is known only once stages exist: the split pass checks it (`passes/replicate.py`).
`check_replica_backends` refuses backends other than onnx, tvm and cpp, which write no per-replica artifacts.
"""

from __future__ import annotations

from ..compiler.annotations import QUANTIZE_REQUESTS, SPLIT
from ..compiler.diagnostics import PlanError
from ..compiler.program import Program
from ..passes.cdc.request import CDC
from ..passes.replicate import REPLICATE_REQUESTS, ReplicateRequest
from . import ast
from .lower import _target, plan_names
from .selectors import resolve

REPLICA_BACKENDS = ("onnx", "tvm", "cpp")
"""The backends that write every replica's artifacts (its sub-model copy, its module, its rank in main.cpp)."""


def lower_replicates(plan: ast.Plan, program: Program) -> None:
    names_of = plan_names(program)
    nodes = {n.name: n for n in program.nodes()}
    replicated_by: dict[str, ast.ReplicateStmt] = {}
    requests: list[ReplicateRequest] = []
    for stmt in plan.replicates:
        placements = tuple(_target(t, program, None) for t in stmt.targets)
        resources = {p.resource for p in placements}
        if len(resources) > 1:
            raise PlanError(f"replicas must all run on one kind of resource, got {', '.join(sorted(resources))}",
                            stmt.span, hint="replicas share one compiled sub-model; list only cpu (or only gpu) targets")
        _check_quantized_alike(stmt, placements, program)
        names = resolve(stmt.selector, names_of, warn=program.warnings.append, purpose="replication")
        for name in names:
            node = nodes.get(name)
            if node is None:
                continue
            if name in replicated_by:
                raise PlanError(f"node '{name}' is already replicated at {replicated_by[name].span}", stmt.selector.span)
            if CDC in node.meta:
                raise PlanError(f"layer '{name}' is coded by cdc; a coded layer's parts and parities are stages on "
                                "their own targets and cannot be replicated", stmt.selector.span)
            if SPLIT in node.meta:
                raise PlanError(f"layer '{name}' is split by a `split` statement; its parts are stages on their own "
                                "targets and cannot be replicated", stmt.selector.span,
                                hint="replicate the stages before or after the split layer")
            replicated_by[name] = stmt
        requests.append(ReplicateRequest(frozenset(n for n in names if n in nodes), placements,
                                         _statement_text(stmt), stmt.span))
    if requests:
        program.model.meta[REPLICATE_REQUESTS] = requests


def check_replica_backends(program: Program, backends: list[str]) -> None:
    """Only the onnx (a copy of the stage's sub-model per replica device), tvm (a module per replica, for its
    device: `backends/tvm/replica_modules.py`) and cpp backends write replicas; another backend (vta, a plugin)
    writes one artifact per stage, so a replica elsewhere would have none."""
    requests: list[ReplicateRequest] = program.model.meta.get(REPLICATE_REQUESTS) or []
    other = [b for b in backends if b not in REPLICA_BACKENDS]
    if requests and other:
        raise PlanError(f"replicated stages are written by the {', '.join(REPLICA_BACKENDS)} backends only, not by "
                        f"{', '.join(other)} (it writes one artifact per stage, for its device, and none for the "
                        "other replicas yet)", requests[0].span,
                        hint="compile this plan with --backend onnx, tvm or cpp, or leave `replicate` out")


def _check_quantized_alike(stmt: ast.ReplicateStmt, placements: tuple, program: Program) -> None:
    """Device `quantize` statements name all of the replicas' devices alike, or none of them."""
    by_device = {r.device: r for r in program.model.meta.get(QUANTIZE_REQUESTS) or [] if r.device is not None}
    named = [p.device for p in placements if p.device in by_device]
    if not named:
        return
    unnamed = [p.device for p in placements if p.device not in by_device]
    settings = {(r.dtype, r.granularity, r.method, r.calibrate, r.correct_bias, r.equalize)
                for r in (by_device[d] for d in named)}
    if unnamed or len(settings) > 1:
        why = f"'{named[0]}' is quantized but '{unnamed[0]}' is not" if unnamed else "their quantize statements differ"
        raise PlanError(f"replicas must run the same sub-model: {why}", stmt.span,
                        hint="quantize every replica's device alike, or quantize the stage's nodes by selector")


def _statement_text(stmt: ast.ReplicateStmt) -> str:
    return f"replicate {stmt.selector} on {', '.join(str(t) for t in stmt.targets)}"
