"""Read a compiled output directory back: its typed manifest, its stages' sub-models and sessions.

Shared by every way of running an output (in-process verify, the MPI ranks, the C++ program's
launcher), so they all agree on what a stage consumes and produces. Which engine runs a stage
is the engine registry's business (`engines.py`); this module only knows the ONNX sub-models,
which every output has. The model's inputs are `inputs.py`'s (`random_inputs` is re-exported
here, where scripts and benchmarks import it from).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from ..backends.manifest import Manifest, StageEntry, read_manifest
from ..compiler.diagnostics import ModelError, UsageError, first_line
from .engines import checked_engine
from .inputs import random_inputs

__all__ = ["CompiledOutput", "random_inputs"]


@dataclass
class CompiledOutput:
    """An output directory opened for running: its root and checked manifest; sub-model paths are checked
    when a stage is asked for, so a missing file names its stage."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: str | Path) -> CompiledOutput:
        root = Path(root)
        return cls(root, read_manifest(root))

    @property
    def stages(self) -> tuple[StageEntry, ...]:
        return self.manifest.stages

    def stage_model(self, rank: int) -> Path:
        path = self.root / self.manifest.stage(rank).model
        if not path.is_file():
            raise UsageError(f"stage {rank}: sub-model '{path}' is missing")
        return path

    def session(self, rank: int, threads: int | None = None, *, spin: bool = True) -> ort.InferenceSession:
        """The stage's onnxruntime session; `spin=False` makes idle worker threads sleep, for ranks sharing cores."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or self.manifest.stage(rank).threads or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        path = self.stage_model(rank)
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"stage {rank}: onnxruntime cannot load '{path}': {first_line(exc)}") from None

    def engine_session(self, rank: int, engine: str, *, threads: int | None = None, spin: bool = True) -> Any:
        """The stage's session in `engine` (see `engines.py`), all with onnxruntime's `run`/`get_inputs`."""
        return checked_engine(self, engine, per_stage=True).session(self, rank, threads, spin)

    def reference_model(self, override: str | Path | None = None) -> Path:
        if override is None and not self.manifest.model.path:
            raise UsageError("the manifest records no source model path; pass --model")
        path = Path(override) if override else Path(self.manifest.model.path)
        if override is None and not path.is_absolute():
            path = self.root / path
        if not path.is_file():
            raise UsageError(f"reference model '{path}' not found; pass --model to point at the unsplit model")
        return path
