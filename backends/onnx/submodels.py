"""Cut one ONNX sub-model per stage out of the split program.

A stage's inputs and outputs, in order, are those of `stage_io.py` (the graph inputs it owns,
then what it receives; what it sends, then the graph outputs it computes), so the sub-model
matches the signature the manifest records. Boundary tensors keep their original names, so
`comm.json`, the manifest and the sub-models all speak of the same tensor.
Weights are shared with the program (onnx-ir clones nodes, not tensors) and never copied:
`stream.py` writes a weight-free header with the weights' bytes streamed in from the
memory-mapped source (hashed on the way, checked on the header). Stages above
`EXTERNAL_DATA_THRESHOLD` bytes of weights get an external data file; smaller stages hold
their weights inline. Either way an output directory never refers to the source model's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

from ...compiler.diagnostics import ModelError, first_line
from ...compiler.program import Program
from ..manifest import record_sha256
from ..stage_io import stage_io
from .stream import Sources, write_model

EXTERNAL_DATA_THRESHOLD = 64 << 20
MIN_IR_VERSION = 7


@dataclass
class StageModel:
    stage: int
    model: ir.Model
    inputs: list[str]
    outputs: list[str]
    weight_bytes: int
    external_data: str | None = None


def extract_stage(program: Program, index: int, stage_nodes: list[ir.Node] | None = None) -> StageModel:
    """The sub-model of stage `index`; pass `stage_nodes` (from `Program.nodes_by_stage`) to skip a graph scan."""
    graph = program.graph
    io = stage_io(program, index, stage_nodes)
    if not io.outputs:
        raise ModelError(f"stage {index} computes nothing that is used (no outputs); check the placement")
    initializers = {v.name: v for n in io.nodes for v in n.inputs if v is not None and v.is_initializer()}
    view = ir.GraphView(
        io.inputs, io.outputs, nodes=io.nodes, initializers=list(initializers.values()),
        opset_imports={k: v for k, v in graph.opset_imports.items() if k != "edgec"},
        name=f"{graph.name or 'model'}_stage{index}",
    )
    sub = view.clone()
    for value, original in zip(sub.inputs, io.inputs):
        value.name = io.input_name(original)
    model = ir.Model(sub, ir_version=max(program.model.ir_version, MIN_IR_VERSION), producer_name="edgec")
    weight_bytes = sum(v.const_value.nbytes for v in initializers.values() if v.const_value is not None)
    return StageModel(index, model, [v.name for v in sub.inputs], [v.name for v in sub.outputs], weight_bytes)


def write_stage_files(program: Program, path_of: dict[int, Path]) -> dict[int, StageModel]:
    """Write and check each stage's sub-model at `path_of[stage]` (external data beside it when big)."""
    written: dict[int, StageModel] = {}
    by_stage = program.nodes_by_stage()
    with Sources() as sources:
        for stage in program.stages:
            sm = extract_stage(program, stage.index, by_stage[stage.index])
            path = path_of[stage.index]
            path.parent.mkdir(parents=True, exist_ok=True)
            sm.external_data = f"{path.name}.data" if sm.weight_bytes >= EXTERNAL_DATA_THRESHOLD else None
            try:
                files = write_model(sm.model, path, data_file=sm.external_data, sources=sources).files
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
                raise ModelError(f"sub-model of stage {stage.index} fails the ONNX checker: {first_line(exc)}") from None
            except ValueError as exc:
                raise ModelError(f"sub-model of stage {stage.index} cannot be written: {first_line(exc)}") from None
            for file, (digest, _size) in files.items():
                record_sha256(file, digest)
            written[stage.index] = sm
    return written


def write_stage_models(program: Program, directory_of: dict[int, Path]) -> dict[int, Path]:
    """Write and check each stage's sub-model as `stage<k>.onnx`; `directory_of` maps stage → device directory."""
    paths = {s.index: directory_of[s.index] / f"stage{s.index}.onnx" for s in program.stages}
    write_stage_files(program, paths)
    return paths
