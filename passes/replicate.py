"""Replicated stages: one copy of a stage per `replicate` target, applied as the split pass forms stages.

Why inside the split pass rather than a pass of its own: replication is a fact about stages,
and the passes after split (quantize picks an engine per stage's resource, comm-insert numbers
the transfers by stage) must already see each replicated stage on its first replica's target.
So `apply_replicas` runs at the end of `SplitVertical.call` and the pipeline is unchanged.

Contract. A `ReplicateRequest` (lowered from `replicate SELECTOR on T0, T1, …`) names nodes; after
the stages are formed, those nodes must be exactly the nodes of the stage(s) they touch (whole
stages: what the `place` statements give them; a selection that cuts a stage is a located
`PlanError` naming a node it leaves out). Each such stage moves to T0 (the `place` target is not
implied) and gets r = len(targets) replicas: replica 0 is the stage's own rank, replicas 1 … r−1
get new ranks numbered after all stages, in stage order; each keeps the `place` statement's
threads where its device has the cores. Every replica runs the same sub-model;
frame f is computed by replica f mod r (`ROUND_ROBIN`). The records go to `program.replicas`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..compiler.annotations import PLACEMENT, Placement, stage_of
from ..compiler.diagnostics import PlanError, SourceSpan
from ..compiler.program import Program, StageReplicas

REPLICATE_REQUESTS = "edgec.replicate-requests"
ROUND_ROBIN = "frame f is computed by replica f mod r of a stage with r replicas"


@dataclass(frozen=True)
class ReplicateRequest:
    """One `replicate` statement, lowered: the selected node names and one placement per replica."""

    nodes: frozenset[str]
    placements: tuple[Placement, ...]
    statement: str
    span: SourceSpan | None = None


def apply_replicas(program: Program) -> int:
    """Give every stage a request selects its replicas (see the module docstring); the number of stages replicated."""
    requests: list[ReplicateRequest] = program.model.meta.get(REPLICATE_REQUESTS) or []
    if not requests:
        return 0
    by_stage = program.nodes_by_stage()
    chosen: dict[int, ReplicateRequest] = {}
    for request in requests:
        touched = sorted({stage_of(n) for n in program.nodes() if n.name in request.nodes})
        if not touched:
            raise PlanError("replicate selects no node that is left in the graph", request.span)
        for index in touched:
            left_out = [n.name for n in by_stage[index] if n.name not in request.nodes]
            if left_out:
                stage = program.stages[index]
                raise PlanError(
                    f"replicate copies whole stages: stage {index} (on {stage.device}.{stage.resource}) also holds "
                    f"'{left_out[0]}'" + (f" and {len(left_out) - 1} more node(s)" if len(left_out) > 1 else "")
                    + ", which the selection leaves out", request.span,
                    hint="select exactly the nodes of one or more `place` statements (e.g. the same range)")
            chosen[index] = request
    next_rank = len(program.stages)
    for index in sorted(chosen):
        request = chosen[index]
        stage = program.stages[index]
        placements = tuple(_with_threads(p, stage.threads, program) for p in request.placements)
        first = placements[0]
        stage.device, stage.resource, stage.threads = first.device, first.resource, first.threads
        for node in by_stage[index]:
            node.meta[PLACEMENT] = first
        extra = tuple(range(next_rank, next_rank + len(placements) - 1))
        next_rank += len(extra)
        program.replicas.append(StageReplicas(index, placements, (index, *extra), request.statement))
    return len(chosen)


def _with_threads(target: Placement, threads: int | None, program: Program) -> Placement:
    """A replica keeps the `place` statement's thread count where its device has that many cores."""
    cores = program.platform.devices[target.device].cores
    kept = threads if threads is not None and threads <= cores else None
    return Placement(target.device, target.resource, kept, target.span)
