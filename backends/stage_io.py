"""What one stage of a split program consumes and produces, in the order its artifacts take them.

Why one definition: the stage's ONNX sub-model lists its graph inputs and outputs in this order,
TVM's `main` takes them positionally in this order, and the manifest records this order as the
stage's signature, so the runtime and the C++ backend read it there instead of re-parsing the
sub-model. Inputs are the graph inputs the stage owns (and uses), then the tensors it receives
(under their original names, in node order); outputs are the tensors it sends, then the graph
outputs it computes, each once.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from ..compiler.annotations import BOUNDARY, is_edgec_op
from ..compiler.program import Program


@dataclass
class StageIO:
    """One stage's compute nodes (edgec's Send/Recv left out) and its boundary values in signature order:
    the graph inputs it owns, the values it receives, then what it sends and the graph outputs it computes."""

    nodes: list[ir.Node]
    owned: list[ir.Value]
    received: list[ir.Value]
    outputs: list[ir.Value]

    @property
    def inputs(self) -> list[ir.Value]:
        return self.owned + self.received

    def input_name(self, value: ir.Value) -> str:
        """A received tensor's name in the sub-model is its original (boundary) name."""
        return value.meta.get(BOUNDARY, value.name) if any(value is v for v in self.received) else value.name


def stage_io(program: Program, index: int, members: list[ir.Node] | None = None) -> StageIO:
    """The compute nodes and boundary values of stage `index`; pass `members` (from
    `Program.nodes_by_stage`) to skip a graph scan."""
    graph = program.graph
    members = members if members is not None else program.stage_nodes(index)
    nodes = [n for n in members if not is_edgec_op(n)]
    received = [n.outputs[0] for n in members if is_edgec_op(n, "Recv")]
    owned = [v for v in graph.inputs if program.input_owner.get(v.name) == index and v.uses()]
    sent = [n.inputs[0] for n in members if is_edgec_op(n, "Send")]
    computed = {id(v) for n in nodes for v in n.outputs}
    seen: set[int] = set()
    outputs = [v for v in sent + list(graph.outputs)
               if id(v) in computed and not (id(v) in seen or seen.add(id(v)))]
    return StageIO(nodes, owned, received, outputs)
