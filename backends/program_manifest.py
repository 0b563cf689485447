"""The core of a compiled output's manifest, built from the split `Program` before any backend runs.

Why before: every backend reads the same description (stages with their sub-model path and
signature, transfers, platform, graph inputs and outputs) instead of asking the IR again, and
the sub-model paths are fixed here (`devices/<device>/stage<k>.onnx`) for the ONNX backend to
write to. Backend sections and file hashes are added as the backends run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import onnx_ir as ir

from ..compiler.annotations import CDC_LAYERS, stage_of
from ..compiler.diagnostics import UsageError
from ..compiler.program import Program
from .manifest import (
    GraphTensor, Manifest, ModelInfo, PassRecord, PlanInfo, SplitEntry, StageEntry, StageInput, StageSend,
    StageSignature, TensorSpec, TransferEntry, tool_versions,
)
from .pruning_records import PruningInfo
from .cdc_records import CdcInfo
from .replica_records import ReplicaInfo
from .quantization_records import QuantizationInfo
from .stage_io import stage_io


def stage_model_path(device: str, index: int) -> str:
    """Where the ONNX backend writes a stage's sub-model, relative to the output directory."""
    return f"devices/{device}/stage{index}.onnx"


def _spec(value: ir.Value, name: str | None = None) -> TensorSpec:
    return TensorSpec(name or value.name, tuple(int(d) for d in value.shape), value.dtype.numpy().name)


def _graph_tensor(value: ir.Value, stage: int | None) -> GraphTensor:
    return GraphTensor(value.name, tuple(int(d) for d in value.shape), value.dtype.numpy().name, stage)


def _source(info: Mapping[str, Any] | None, known: tuple[str, ...], what: str) -> Mapping[str, Any] | None:
    unknown = set(info or {}) - set(known)
    if unknown:
        raise UsageError(f"{what} info has unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    return info


def build_manifest(program: Program, *, model_info: Mapping[str, Any], plan_info: Mapping[str, Any] | None,
                   backends: Sequence[str]) -> Manifest:
    """The manifest of `program` without backend sections or file hashes."""
    graph = program.graph
    by_stage = program.nodes_by_stage()
    stages = []
    for stage in program.stages:
        io = stage_io(program, stage.index, by_stage[stage.index])
        signature = StageSignature(tuple(_spec(v, io.input_name(v)) for v in io.inputs),
                                   tuple(_spec(v) for v in io.outputs))
        nodes = io.nodes
        stages.append(StageEntry(
            rank=stage.rank, device=stage.device, resource=stage.resource, threads=stage.threads, nodes=len(nodes),
            first_node=nodes[0].name if nodes else None, last_node=nodes[-1].name if nodes else None,
            model=stage_model_path(stage.device, stage.index),
            inputs=tuple(StageInput(v.name) for v in graph.inputs if program.input_owner.get(v.name) == stage.index)
            + tuple(StageInput(t.tensor, t.src, t.tag) for t in program.transfers if t.dst == stage.index),
            outputs=tuple(v.name for v in graph.outputs if (p := v.producer()) is not None
                          and stage_of(p) == stage.index),
            sends=tuple(StageSend(t.tensor, t.dst, t.tag) for t in program.transfers if t.src == stage.index),
            signature=signature,
        ))
    model = _source(model_info, ("path", "sha256"), "model") or {}
    plan = _source(plan_info, ("path", "sha256", "source"), "plan")
    return Manifest(
        model=ModelInfo(
            model.get("path"), model.get("sha256"),
            tuple(_graph_tensor(v, program.input_owner.get(v.name)) for v in graph.inputs),
            tuple(_graph_tensor(v, stage_of(v.producer()) if v.producer() else None) for v in graph.outputs)),
        plan=PlanInfo(plan["path"], plan["sha256"], plan["source"]) if plan is not None else None,
        platform=program.platform,
        stages=tuple(stages),
        transfers=tuple(TransferEntry(t.tensor, t.src, t.dst, t.tag, tuple(t.shape), t.dtype, t.dtype, t.nbytes)
                        for t in program.transfers),
        splits=tuple(SplitEntry.from_json(report.to_json(), where="splits") for report in program.splits),
        passes=tuple(PassRecord.from_json(entry, where="passes") for entry in program.pass_log),
        tools=tool_versions(),
        backends=tuple(backends),
        quantization=QuantizationInfo.of(program.quantization, program.wire_quantization),
        pruning=PruningInfo.of(program.pruning, program.pruning_cost),
        cdc=CdcInfo.of(program.model.meta.get(CDC_LAYERS), lambda name: stage_of(program.node(name))),
        replicas=ReplicaInfo.of(program, stage_model_path),
    )
