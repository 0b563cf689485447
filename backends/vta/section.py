"""The `vta` section of manifest.json: per VTA stage, the layers compiled for VTA and the nodes left to its CPU.

Read by the VTA engine (`runtime/vta_stage.py`: which layers it simulates, from which files, and
which int8 tensors they read and write) and by `edgec show` (what runs on VTA, what falls back
and why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import Fields, Record, Section


@dataclass(frozen=True)
class VtaLayer(Record):
    """One layer compiled for VTA. `kind`: conv, dense, add or pool. `inputs`/`output`: the int8 tensors of
    the stage graph it reads and writes (one sample each: batch runs loop over samples). `program`:
    the 128-bit instruction stream (uint64 pairs, little-endian); `dram`: the DRAM image holding
    micro-ops, packed weights, biases and shifts, whose `regions` (name → offset, shape, dtype)
    the runtime fills (`inp`, or `a`/`b`) and reads (`out`). Cycles are the cycle model's per sample."""

    name: str
    op: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    output_shape: tuple[int, ...]
    program: str
    dram: str
    regions: dict[str, Any]
    instructions: int
    cycles: int
    macs: int
    utilization: float
    dma_bytes: int


@dataclass(frozen=True)
class VtaFallback(Record):
    """A node of a VTA stage that runs on the device's CPU (onnxruntime), and why."""

    node: str
    op: str
    reason: str


@dataclass(frozen=True)
class VtaStage(Record):
    rank: int
    device: str
    resource: str
    layers: tuple[VtaLayer, ...]
    fallbacks: tuple[VtaFallback, ...]
    clock_hz: float

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "device": self.device, "resource": self.resource, "clock_hz": self.clock_hz,
                "layers": [layer.to_json() for layer in self.layers],
                "fallbacks": [f.to_json() for f in self.fallbacks]}

    @classmethod
    def read(cls, f: Fields) -> VtaStage:
        f.only("rank", "device", "resource", "clock_hz", "layers", "fallbacks")
        return cls(f.integer("rank"), f.string("device"), f.string("resource"), f.records("layers", VtaLayer),
                   f.records("fallbacks", VtaFallback), f.number("clock_hz"))


@dataclass(frozen=True)
class VtaSection(Section):
    """What the vta backend built: the hardware configuration and one entry per stage on a `vta` resource."""

    config: str
    stages: tuple[VtaStage, ...]

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "stages": [s.to_json() for s in self.stages]}

    @classmethod
    def read(cls, f: Fields) -> VtaSection:
        f.only("config", "stages")
        return cls(f.string("config"), f.records("stages", VtaStage))

    def stage(self, rank: int) -> VtaStage | None:
        return next((s for s in self.stages if s.rank == rank), None)


