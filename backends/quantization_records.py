"""The manifest's `quantization` section: what the quantize pass did to each stage and to each wire.

Why in the manifest: `edgec show` lists it, and `edgec verify` must know that an output is
quantized, because a quantized program is judged by its agreement with the float model
(top-1 agreement, accuracy drop on a data set) instead of by equality. Written from
`Program.quantization` and `Program.wire_quantization`; absent from the manifests of float
plans (and of every output written before quantization existed), which read back as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import Fields, Record


@dataclass(frozen=True)
class StageQuantizationEntry(Record):
    """One quantized stage: its engine's activation dtype and why, the weights' dtype and granularity
    (`per_channel`/`per_tensor`), the calibration method, the options applied, and the quantized nodes."""

    stage: int
    device: str
    engine: str
    activation_dtype: str
    weight_dtype: str
    granularity: str
    method: str
    nodes: tuple[str, ...]
    reason: str
    bias_correction: bool = False
    equalization: bool = False

    @classmethod
    def read(cls, f: Fields) -> StageQuantizationEntry:
        f.only("stage", "device", "engine", "activation_dtype", "weight_dtype", "granularity", "method", "nodes",
               "reason", "bias_correction", "equalization")
        return cls(f.integer("stage"), f.string("device"), f.string("engine"), f.string("activation_dtype"),
                   f.string("weight_dtype"), f.string("granularity"), f.string("method"), f.strs("nodes"),
                   f.string("reason"), f.boolean("bias_correction", default=False),
                   f.boolean("equalization", default=False))


@dataclass(frozen=True)
class WireQuantizationEntry(Record):
    """One boundary tensor that travels quantized: float `tensor` crosses as `wire_tensor` in format `wire`,
    with `scale` and `zero_point` (None for fp16, which has neither)."""

    tensor: str
    wire_tensor: str
    wire: str
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def read(cls, f: Fields) -> WireQuantizationEntry:
        f.only("tensor", "wire_tensor", "wire", "scale", "zero_point")
        return cls(f.string("tensor"), f.string("wire_tensor"), f.string("wire"),
                   f.number("scale", null=True, default=None), f.integer("zero_point", null=True, default=None))


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
        return cls(tuple(StageQuantizationEntry(q.stage, q.device, q.engine, q.activation_dtype, q.weight_dtype,
                                                q.granularity, q.method, tuple(q.nodes), q.reason,
                                                bool(q.bias_correction), bool(q.equalization)) for q in stages),
                   tuple(WireQuantizationEntry(w.tensor, w.wire_tensor, w.wire,
                                               None if w.scale is None else float(w.scale),
                                               None if w.zero_point is None else int(w.zero_point)) for w in wires))

    def stage(self, rank: int) -> StageQuantizationEntry | None:
        return next((s for s in self.stages if s.stage == rank), None)

    def wire_of(self, tensor: str) -> WireQuantizationEntry | None:
        """The wire record whose `wire_tensor` (what crosses) or float `tensor` is `tensor`."""
        return next((w for w in self.wires if tensor in (w.wire_tensor, w.tensor)), None)
