"""Candidate split points, and the units (runs of nodes between them) every plan is made of.

A cut after position c splits the topological order into [..c] and [c+1..]. Why not every
position: a real model has hundreds of nodes and most cuts are crossed by several tensors (a
residual block's skip, DenseNet's concatenations); the search space and the DP's cost grow with
the number of cuts. So the candidates are the cheapest cuts — first those crossed by the fewest
tensors, then by the fewest bytes — spread evenly over the model's compute time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph_facts import GraphFacts


@dataclass(frozen=True)
class Units:
    starts: np.ndarray
    """First node position of each unit; starts[0] == 0."""
    size: int
    """Number of nodes in the model."""

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def ends(self) -> np.ndarray:
        """Last node position of each unit (inclusive)."""
        return np.append(self.starts[1:] - 1, self.size - 1)

    def unit_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1


def crossing(facts: GraphFacts) -> tuple[np.ndarray, np.ndarray]:
    """(tensors, bytes) crossing the cut after each position 0 … n-2."""
    n = facts.size
    count = np.zeros(n + 1, dtype=np.int64)
    size = np.zeros(n + 1, dtype=np.int64)
    for producer, reads, nbytes in zip(facts.value_producer, facts.reads, facts.value_bytes):
        first, last = max(int(producer), 0), int(reads[-1])
        if last > first:
            count[first] += 1
            count[last] -= 1
            size[first] += nbytes
            size[last] -= nbytes
    return np.cumsum(count)[: n - 1], np.cumsum(size)[: n - 1]


def candidate_units(facts: GraphFacts, node_time: np.ndarray, points: int) -> Units:
    """At most `points` cuts: the model's compute time (`node_time`) is divided into `points` equal
    windows and each window keeps its cheapest cut (fewest tensors, then fewest bytes); windows
    without a cut leave their share to the cheapest cuts left anywhere."""
    n = facts.size
    if n < 2 or points < 1:
        return Units(np.zeros(1, dtype=np.int64), n)
    if points >= n - 1:
        return all_units(facts)
    tensors, nbytes = crossing(facts)
    rank = np.empty(n - 1, dtype=np.int64)
    rank[np.lexsort((nbytes, tensors))] = np.arange(n - 1)
    weight = np.maximum(np.asarray(node_time, dtype=float), 0) + 1e-12
    done = (np.cumsum(weight) / weight.sum())[: n - 1]
    window = np.minimum((done * points).astype(np.int64), points - 1)
    chosen = {int(np.flatnonzero(window == w)[np.argmin(rank[window == w])]) for w in np.unique(window)}
    for cut in np.argsort(rank):
        if len(chosen) >= points:
            break
        chosen.add(int(cut))
    pool = np.asarray(sorted(chosen), dtype=np.int64)
    return Units(np.concatenate([[0], pool + 1]).astype(np.int64), n)


def all_units(facts: GraphFacts) -> Units:
    """Every node its own unit (every cut a candidate): for small models and the tests."""
    return Units(np.arange(facts.size, dtype=np.int64), facts.size)
