"""The facts passes establish about a `Program`, and that passes and backends require.

A pass declares three sets of facts: what must hold before it runs (`requires`), what holds
after it (`provides`), and what it breaks (`invalidates`); `after` names facts whose providers
must run first when they are in the pipeline at all (an ordering without a dependency). The
PassManager checks a pipeline against these declarations before anything runs, and derives
the canonical order from them, so no pass carries a number that says where it goes.

`Fact` is a `str` enum so that manifests and `edgec passes --json` print its plain value.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable


class Fact(str, Enum):
    CANONICAL = "canonical"
    """The graph is canonical: no Dropout/Identity, Sum of two is Add, constant subgraphs folded."""
    PLACED = "placed"
    """Every node carries a placement (device, resource, threads): the plan's `place` statements."""
    LAYERS_SPLIT = "layers-split"
    """The plan's intra-layer `split` statements are rewritten into parts and merges."""
    STAGED = "staged"
    """Every node belongs to a stage (one MPI rank); stages are in topological order."""
    BATCHNORM_FOLDED = "batchnorm-folded"
    """No inference BatchNormalization is left: folded into the Conv before it, or a Mul and an Add."""
    QUANTIZED = "quantized"
    """The plan's `quantize` statements are applied: QuantizeLinear/DequantizeLinear pairs (or fp16
    casts) around the selected nodes and on the selected stage boundaries."""
    PRUNED = "pruned"
    """The plan's `prune` statements are applied: the selected layers' channels are removed, with
    everything that depends on them."""
    CDC_ENCODED = "cdc-encoded"
    """The plan's `cdc` statements are applied: each coded layer's split parts have R parity parts beside them,
    recorded (generator, part and parity tensors) for the merge's decoder."""
    COMM = "comm"
    """Every value crossing stages goes through an edgec.Send/edgec.Recv pair; transfers are listed."""

    def __str__(self) -> str:
        return self.value


def fact_names(facts: Iterable[Fact]) -> str:
    """`a, b` in the enum's order, or `nothing`."""
    ordered = [f.value for f in Fact if f in set(facts)]
    return ", ".join(ordered) if ordered else "nothing"
