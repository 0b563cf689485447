"""The split-point encoding NSGA-II searches: integers that always decode to a valid plan.

For at most S stages over U units and D devices, a genome is 2S−1 integers: S−1 cut genes in
[0, U−1] (0: no cut; the others, deduplicated and sorted, are the first units of stages 2, 3, …)
and S device genes in [0, D−1] (stage k takes device gene k, or the next device not taken yet,
cyclically). So every genome is a plan of 1…S contiguous, non-empty stages on distinct devices,
and crossover and mutation never need repairing beyond rounding. With more than one wire format
to choose from, one last gene picks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cost_model import Plan


@dataclass(frozen=True)
class Encoding:
    units: int
    devices: int
    stages: int
    wires: tuple[str, ...] = ("float32",)

    def __post_init__(self) -> None:
        if not 1 <= self.stages <= min(self.units, self.devices):
            raise ValueError(f"stages must be within 1 … min(units, devices), got {self.stages}")

    @property
    def size(self) -> int:
        return 2 * self.stages - 1 + (len(self.wires) > 1)

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.int64)

    @property
    def upper(self) -> np.ndarray:
        wire = [len(self.wires) - 1] if len(self.wires) > 1 else []
        return np.asarray([self.units - 1] * (self.stages - 1) + [self.devices - 1] * self.stages + wire, dtype=np.int64)

    def decode(self, genome) -> Plan:
        genes = [int(round(float(g))) for g in genome]
        s = self.stages
        cuts = sorted({min(max(c, 0), self.units - 1) for c in genes[: s - 1]} - {0})
        starts = (0, *cuts)
        taken: list[int] = []
        for k in range(len(starts)):
            device = genes[s - 1 + k] % self.devices
            while device in taken:
                device = (device + 1) % self.devices
            taken.append(device)
        wire = self.wires[min(max(genes[-1], 0), len(self.wires) - 1)] if len(self.wires) > 1 else self.wires[0]
        return Plan(starts, tuple(taken), wire)

    def encode(self, plan: Plan) -> np.ndarray:
        """A genome decoding to `plan` (which must have at most `stages` stages)."""
        if len(plan.starts) > self.stages:
            raise ValueError(f"a plan of {len(plan.starts)} stages does not fit {self.stages}")
        cuts = list(plan.starts[1:]) + [0] * (self.stages - len(plan.starts))
        devices = list(plan.devices) + [0] * (self.stages - len(plan.devices))
        wire = [self.wires.index(plan.wire)] if len(self.wires) > 1 else []
        return np.asarray(cuts + devices + wire, dtype=np.int64)
