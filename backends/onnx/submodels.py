"""Cut one ONNX sub-model per stage out of the split program.

A stage's inputs are its Recv'd tensors plus the graph inputs it owns; its outputs are the
tensors it sends plus the graph outputs it produces. Boundary tensors keep their original
names, so `comm.json`, the manifest and the sub-models all speak of the same tensor.
Weights are shared with the program (onnx-ir clones nodes, not tensors) and written once;
stages above `EXTERNAL_DATA_THRESHOLD` bytes of weights get an external data file (streamed
from the memory-mapped source); smaller stages hold their weights inline. Either way an
output directory never refers to the source model's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

from ...compiler.annotations import BOUNDARY, is_edgec_op
from ...compiler.diagnostics import ModelError, first_line
from ...compiler.program import Program

EXTERNAL_DATA_THRESHOLD = 64 << 20
MIN_IR_VERSION = 7


@dataclass
class StageModel:
    stage: int
    model: ir.Model
    inputs: list[str]
    outputs: list[str]
    weight_bytes: int

    def inline_weights(self) -> None:
        """Give lazily loaded weights in-memory tensors, so `ir.save` embeds them instead of referring to the source."""
        for value in self.model.graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                value.const_value = ir.Tensor(value.const_value.numpy(), name=value.name)


def extract_stage(program: Program, index: int, stage_nodes: list[ir.Node] | None = None) -> StageModel:
    """The sub-model of stage `index`; pass `stage_nodes` (from `Program.nodes_by_stage`) to skip a graph scan."""
    graph = program.graph
    members = stage_nodes if stage_nodes is not None else program.stage_nodes(index)
    nodes = [n for n in members if not is_edgec_op(n)]
    received = [n.outputs[0] for n in members if is_edgec_op(n, "Recv")]
    owned = [v for v in graph.inputs if program.input_owner.get(v.name) == index and v.uses()]
    sent = [n.inputs[0] for n in members if is_edgec_op(n, "Send")]
    computed = {id(v) for n in nodes for v in n.outputs}
    outputs = _unique([v for v in sent + list(graph.outputs) if id(v) in computed])
    inputs = owned + received
    if not outputs:
        raise ModelError(f"stage {index} computes nothing that is used (no outputs); check the placement")
    initializers = {v.name: v for n in nodes for v in n.inputs if v is not None and v.is_initializer()}
    view = ir.GraphView(
        inputs, outputs, nodes=nodes, initializers=list(initializers.values()),
        opset_imports={k: v for k, v in graph.opset_imports.items() if k != "edgec"},
        name=f"{graph.name or 'model'}_stage{index}",
    )
    sub = view.clone()
    original_name = {v.name: v.meta[BOUNDARY] for v in received}
    for value in sub.inputs:
        value.name = original_name.get(value.name, value.name)
    model = ir.Model(sub, ir_version=max(program.model.ir_version, MIN_IR_VERSION), producer_name="edgec")
    weight_bytes = sum(v.const_value.nbytes for v in initializers.values() if v.const_value is not None)
    return StageModel(index, model, [v.name for v in sub.inputs], [v.name for v in sub.outputs], weight_bytes)


def _unique(values: list[ir.Value]) -> list[ir.Value]:
    seen: set[int] = set()
    return [v for v in values if not (id(v) in seen or seen.add(id(v)))]


def write_stage_models(program: Program, directory_of: dict[int, Path]) -> dict[int, Path]:
    """Write and check each stage's sub-model; `directory_of` maps stage → device directory."""
    written: dict[int, Path] = {}
    by_stage = program.nodes_by_stage()
    for stage in program.stages:
        sm = extract_stage(program, stage.index, by_stage[stage.index])
        directory = directory_of[stage.index]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"stage{stage.index}.onnx"
        external = f"stage{stage.index}.onnx.data" if sm.weight_bytes >= EXTERNAL_DATA_THRESHOLD else None
        if external is None:
            sm.inline_weights()
        ir.save(sm.model, path, external_data=external)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:
            raise ModelError(f"sub-model of stage {stage.index} fails the ONNX checker: {first_line(exc)}") from None
        written[stage.index] = path
    return written
