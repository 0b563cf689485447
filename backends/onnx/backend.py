"""The ONNX backend as a registered `Backend`: one checked sub-model per stage, at the manifest's paths.

Every output has it (the other backends compile its sub-models, and `edgec verify` runs them in
onnxruntime). Its section records what only the written files knew: the ONNX IR version and
opsets, and per stage the weight bytes and the external data file, if the stage has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...compiler.program import Program
from ..backend import Backend, Progress
from ..manifest import Manifest
from ..records import Fields, Section
from ..replica_records import copy_replica_files
from .submodels import write_stage_files


@dataclass(frozen=True)
class OnnxStage(Section):
    rank: int
    model: str
    weight_bytes: int
    external_data: str | None = None


@dataclass(frozen=True)
class OnnxSection(Section):
    ir_version: int
    opsets: dict[str, int]
    stages: tuple[OnnxStage, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ir_version": self.ir_version, "opsets": dict(self.opsets), "stages": [s.to_json() for s in self.stages]}

    @classmethod
    def read(cls, f: Fields) -> OnnxSection:
        f.only("ir_version", "opsets", "stages")
        opsets = f.get("opsets", "an object")
        if not all(isinstance(v, int) for v in opsets.values()):
            raise f.error("expected an object of integers", "opsets")
        return cls(f.integer("ir_version"), dict(opsets), tuple(OnnxStage.read(c) for c in f.children("stages")))


class OnnxBackend(Backend):
    name = "onnx"
    summary = "one ONNX sub-model per stage (always written)"
    section_type = OnnxSection

    def write(self, program: Program, out: Path, *, manifest: Manifest, progress: Progress) -> OnnxSection:
        progress(f"writing {len(manifest.stages)} ONNX sub-models")
        models = write_stage_files(program, {s.rank: out / s.model for s in manifest.stages})
        copy_replica_files(manifest, out, {rank: m.external_data for rank, m in models.items()})
        first = next(iter(models.values()), None)
        return OnnxSection(
            ir_version=first.model.ir_version if first else 0,
            opsets=dict(sorted(first.model.opset_imports.items())) if first else {},
            stages=tuple(OnnxStage(s.rank, s.model, models[s.rank].weight_bytes,
                                   (Path(s.model).parent / models[s.rank].external_data).as_posix()
                                   if models[s.rank].external_data else None) for s in manifest.stages))
