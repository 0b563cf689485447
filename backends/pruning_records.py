"""The manifest's `pruning` section: what the prune pass removed, and what it saved.

`layers`: each layer that lost channels (before, after, the statement that asked); `costs`:
parameters and MACs before and after each statement, for the whole model (`stage` null) and
for each stage. Written from `Program.pruning` and `Program.pruning_cost`; absent when nothing
was pruned (and in manifests written before pruning existed), which reads back as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import Fields, Record


@dataclass(frozen=True)
class PrunedLayerEntry(Record):
    node: str
    channels_before: int
    channels_after: int
    statement: str

    @classmethod
    def read(cls, f: Fields) -> PrunedLayerEntry:
        f.only("node", "channels_before", "channels_after", "statement")
        return cls(f.string("node"), f.integer("channels_before"), f.integer("channels_after"), f.string("statement"))


@dataclass(frozen=True)
class PruningCostEntry(Record):
    statement: str
    stage: int | None
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @classmethod
    def read(cls, f: Fields) -> PruningCostEntry:
        f.only("statement", "stage", "params_before", "params_after", "macs_before", "macs_after")
        return cls(f.string("statement"), f.integer("stage", null=True), f.integer("params_before"),
                   f.integer("params_after"), f.integer("macs_before"), f.integer("macs_after"))


@dataclass(frozen=True)
class PruningInfo(Record):
    """The `pruning` section."""

    layers: tuple[PrunedLayerEntry, ...] = ()
    costs: tuple[PruningCostEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"layers": [entry.to_json() for entry in self.layers], "costs": [c.to_json() for c in self.costs]}

    @classmethod
    def read(cls, f: Fields) -> PruningInfo:
        f.only("layers", "costs")
        return cls(f.records("layers", PrunedLayerEntry, default=[]), f.records("costs", PruningCostEntry, default=[]))

    @classmethod
    def of(cls, layers: Any, costs: Any) -> PruningInfo | None:
        if not layers and not costs:
            return None
        return cls(tuple(PrunedLayerEntry(p.node, int(p.channels_before), int(p.channels_after), p.statement)
                         for p in layers),
                   tuple(PruningCostEntry(c.statement, c.stage, int(c.params_before), int(c.params_after),
                                          int(c.macs_before), int(c.macs_after)) for c in costs))

    def totals(self) -> list[PruningCostEntry]:
        """The whole-model entries, one per statement."""
        return [c for c in self.costs if c.stage is None]
