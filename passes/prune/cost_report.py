"""Parameters and MACs of the whole model and of each stage, before and after a statement.

Counted with `compiler/cost.py` (Conv, Gemm, MatMul MACs; parameters are the initializers a
node reads, with a DequantizeLinear's weights counted where they are read).
"""

from __future__ import annotations

from collections import defaultdict

import onnx_ir as ir

from ...compiler import cost
from ...compiler.annotations import stage_of


def _params(node: ir.Node) -> int:
    total = cost.params(node)
    for value in node.inputs:
        producer = value.producer() if value is not None else None
        if producer is not None and producer.op_type == "DequantizeLinear" and not value.is_initializer():
            total += cost.params(producer)
    return total if node.op_type != "DequantizeLinear" else 0


def totals(graph: ir.Graph) -> dict:
    """{'params', 'macs', 'stages': {stage: {'params', 'macs'}}} (stage None before staging)."""
    stages: dict = defaultdict(lambda: {"params": 0, "macs": 0})
    for node in graph:
        entry = stages[stage_of(node)]
        entry["params"] += _params(node)
        entry["macs"] += cost.macs(node)
    return {"params": sum(s["params"] for s in stages.values()), "macs": sum(s["macs"] for s in stages.values()),
            "stages": dict(stages)}
