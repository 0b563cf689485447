"""Communication insertion: an explicit `edgec.Send` / `edgec.Recv` pair for every tensor that crosses stages.

Requires: stages (the split pass). Guarantees: no node reads a value of another stage except
through a Recv; every transfer has a unique MPI tag; `program.transfers` lists them in the
order ranks post them. A tensor consumed by several stages is sent once to each of them,
and once only even if that stage uses it many times.
"""

from __future__ import annotations

import onnx_ir as ir

from ..compiler.annotations import BOUNDARY, EDGEC_DOMAIN, STAGE, is_edgec_op
from ..compiler.builder import Builder
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program, Transfer


class CommInsert(Pass):
    """An edgec.Send/edgec.Recv pair for every tensor crossing stages, with unique MPI tags."""

    name = "comm-insert"
    requires = frozenset({Fact.STAGED})
    provides = frozenset({Fact.COMM})
    after = frozenset(Fact) - {Fact.COMM}
    repeatable = False

    def precondition(self, program: Program) -> None:
        if Fact.COMM in program.facts:
            raise self.fail("communication is already inserted")

    def call(self, program: Program) -> PassResult:
        graph = program.graph
        produced = [(v, program.input_owner[v.name], None) for v in graph.inputs]
        produced += [(v, n.meta[STAGE], n) for n in list(graph) for v in n.outputs]
        transfers: list[Transfer] = []
        self._anchor: dict[int, ir.Node] = {}
        self._position = _position(graph)
        for value, src, producer in produced:
            by_stage: dict[int, list] = {}
            for use in value.uses():
                dst = use.node.meta.get(STAGE)
                if dst != src and not is_edgec_op(use.node):
                    by_stage.setdefault(dst, []).append(use)
            for dst in sorted(by_stage):
                transfer = Transfer(
                    tensor=value.name, src=src, dst=dst, tag=len(transfers),
                    shape=tuple(value.shape), dtype=value.dtype.numpy().name,
                )
                self._insert_pair(program, value, producer, by_stage[dst], transfer)
                transfers.append(transfer)
        program.transfers = transfers
        return PassResult(bool(transfers), f"{len(transfers)} transfers")

    def _insert_pair(self, program: Program, value: ir.Value, producer: ir.Node | None, uses: list, t: Transfer) -> None:
        attrs = [ir.AttrInt64("peer", t.dst), ir.AttrInt64("tag", t.tag)]
        send = ir.Node(EDGEC_DOMAIN, "Send", [value], attrs, num_outputs=0, name=f"send/{t.tensor}/s{t.dst}")
        received = ir.Value(name=f"{t.tensor}@s{t.dst}", shape=ir.Shape(t.shape), type=ir.TensorType(value.dtype))
        received.meta[BOUNDARY] = t.tensor
        recv_attrs = [ir.AttrInt64("peer", t.src), ir.AttrInt64("tag", t.tag)]
        recv = ir.Node(EDGEC_DOMAIN, "Recv", [], recv_attrs, outputs=[received], name=f"recv/{t.tensor}/s{t.dst}")
        Builder.in_stage(program, t.src).adopt(send, after=self._anchor.get(id(producer), producer))
        self._anchor[id(producer)] = send
        first = min((u.node for u in uses), key=self._position)
        Builder.in_stage(program, t.dst, first).adopt(recv)
        for use in uses:
            use.node.replace_input_with(use.idx, received)

    def postcondition(self, program: Program) -> None:
        for node in program.nodes():
            if is_edgec_op(node) and node.meta.get(STAGE) is None:
                raise self.fail(f"inserted node '{node.name}' has no stage")


def _position(graph: ir.Graph):
    """Order of the nodes present now; insertions later do not change their relative order."""
    index = {id(n): i for i, n in enumerate(graph)}
    return lambda node: index[id(node)]
