"""The manifest's `pruning` section: what the prune pass removed, and what it saved.

`layers`: each layer that lost channels (before, after, the statement that asked); `costs`:
parameters and MACs before and after each statement, for the whole model (`stage` null) and
for each stage. Written from `Program.pruning` and `Program.pruning_cost`; absent when nothing
was pruned (and in manifests written before pruning existed), which reads back as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..compiler.program import LayerPruning, PruningCost
from .records import Fields, Record


@dataclass(frozen=True)
class PruningInfo(Record):
    """The `pruning` section."""

    layers: tuple[LayerPruning, ...] = ()
    costs: tuple[PruningCost, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"layers": [entry.to_json() for entry in self.layers], "costs": [c.to_json() for c in self.costs]}

    @classmethod
    def read(cls, f: Fields) -> PruningInfo:
        f.only("layers", "costs")
        return cls(f.records("layers", LayerPruning, default=[]), f.records("costs", PruningCost, default=[]))

    @classmethod
    def of(cls, layers: Any, costs: Any) -> PruningInfo | None:
        if not layers and not costs:
            return None
        return cls(tuple(layers), tuple(costs))

    def totals(self) -> list[PruningCost]:
        """The whole-model entries, one per statement."""
        return [c for c in self.costs if c.stage is None]
