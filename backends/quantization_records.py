"""The manifest's `quantization` section: what the quantize pass did to each stage and to each wire.

Why in the manifest: `edgec show` lists it, and `edgec verify` must know that an output is
quantized, because a quantized program is judged by its agreement with the float model
(top-1 agreement, accuracy drop on a data set) instead of by equality. Written from
`Program.quantization` and `Program.wire_quantization`; absent from the manifests of float
plans (and of every output written before quantization existed), which read back as None.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..compiler.program import StageQuantization, WireQuantization
from .records import Fields, Record

StageQuantizationEntry = StageQuantization
"""One quantized stage (the compiler's own record, see `compiler/program.py`)."""
WireQuantizationEntry = WireQuantization
"""One boundary tensor that travels quantized (the compiler's own record)."""


@dataclass(frozen=True)
class QuantizationInfo(Record):
    """The `quantization` section: the quantized stages and the wires that travel quantized."""

    stages: tuple[StageQuantizationEntry, ...] = ()
    wires: tuple[WireQuantizationEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"stages": [s.to_json() for s in self.stages], "wires": [w.to_json() for w in self.wires]}

    @classmethod
    def read(cls, f: Fields) -> QuantizationInfo:
        f.only("stages", "wires")
        return cls(f.records("stages", StageQuantizationEntry, default=[]),
                   f.records("wires", WireQuantizationEntry, default=[]))

    @classmethod
    def of(cls, stages: Any, wires: Any) -> QuantizationInfo | None:
        """The section of a program's `quantization` and `wire_quantization` records; None when both are empty."""
        if not stages and not wires:
            return None
        return cls(tuple(replace(q, nodes=tuple(q.nodes)) for q in stages),
                   tuple(replace(w, scale=None if w.scale is None else float(w.scale),
                                 zero_point=None if w.zero_point is None else int(w.zero_point)) for w in wires))

    def stage(self, rank: int) -> StageQuantizationEntry | None:
        return next((s for s in self.stages if s.stage == rank), None)

    def wire_of(self, tensor: str) -> WireQuantizationEntry | None:
        """The wire record whose `wire_tensor` (what crosses) or float `tensor` is `tensor`."""
        return next((w for w in self.wires if tensor in (w.wire_tensor, w.tensor)), None)
