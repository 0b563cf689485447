"""The facts of a loaded model that a plan's cost depends on, read once into arrays.

Positions are indices into the model's topological order (`Program.node_names()`), the order
`place a .. b` ranges use. A value produced at position p (-1: a graph input) and read at
positions c1 < c2 < … crosses every cut between p and its last reader; the stage that owns a
reader receives it once (comm-insert sends one copy per consuming stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ..compiler.cost import macs
from ..compiler.tensor_types import nbytes


@dataclass(frozen=True)
class GraphFacts:
    names: tuple[str, ...]
    weight_bytes: np.ndarray
    """Bytes of the initializers each node reads (a shared weight is counted at its first reader)."""
    work_bytes: np.ndarray
    """Bytes of each node's activation inputs and outputs: its working set while it runs."""
    macs: np.ndarray
    value_names: tuple[str, ...]
    value_bytes: np.ndarray
    value_producer: np.ndarray
    """Position of each value's producer; -1 for a graph input."""
    reads: tuple[np.ndarray, ...]
    """Per value, the sorted positions of the nodes reading it."""

    @property
    def size(self) -> int:
        return len(self.names)


def _value_bytes(value: ir.Value) -> int:
    if value.shape is None or value.dtype is None or not all(isinstance(d, int) for d in value.shape):
        return 0
    return nbytes(value.shape, value.dtype)


def graph_facts(graph: ir.Graph) -> GraphFacts:
    nodes = list(graph)
    position = {id(n): i for i, n in enumerate(nodes)}
    seen_weights: set[int] = set()
    weights = np.zeros(len(nodes), dtype=np.int64)
    work = np.zeros(len(nodes), dtype=np.int64)
    for i, node in enumerate(nodes):
        for value in node.inputs:
            if value is None:
                continue
            if value.is_initializer() or value.const_value is not None:
                if id(value) not in seen_weights:
                    seen_weights.add(id(value))
                    weights[i] += _value_bytes(value)
            else:
                work[i] += _value_bytes(value)
        work[i] += sum(_value_bytes(v) for v in node.outputs)
        if node.op_type == "Constant":
            weights[i] += sum(_value_bytes(v) for v in node.outputs)
    produced = [(v, -1) for v in graph.inputs if not v.is_initializer()]
    produced += [(v, i) for i, n in enumerate(nodes) for v in n.outputs]
    names, sizes, producers, reads = [], [], [], []
    for value, producer in produced:
        readers = sorted({position[id(u.node)] for u in value.uses() if id(u.node) in position})
        if not readers:
            continue
        names.append(value.name)
        sizes.append(_value_bytes(value))
        producers.append(producer)
        reads.append(np.asarray(readers, dtype=np.int64))
    return GraphFacts(
        names=tuple(n.name for n in nodes), weight_bytes=weights, work_bytes=work,
        macs=np.asarray([macs(n) for n in nodes], dtype=np.int64),
        value_names=tuple(names), value_bytes=np.asarray(sizes, dtype=np.int64),
        value_producer=np.asarray(producers, dtype=np.int64), reads=tuple(reads),
    )

