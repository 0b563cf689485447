"""Read a compiled output directory back: its typed manifest, its stages' sessions, its inputs.

Shared by every way of running an output (in-process verify, the MPI ranks, the C++ program's
launcher), so they all agree on what a stage consumes and produces. Which engine runs a stage
is the engine registry's business (`engines.py`); this module only knows the ONNX sub-models,
which every output has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

from ..backends.manifest import GraphTensor, Manifest, StageEntry, as_manifest, read_manifest
from ..compiler.diagnostics import ModelError, UsageError, first_line
from .engines import checked_engine


@dataclass
class CompiledOutput:
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


def random_inputs(manifest: Manifest | Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in as_manifest(manifest).model.inputs:
        shape, dtype = list(spec.shape), spec.np_dtype
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def _check(spec: GraphTensor, array: np.ndarray) -> None:
    if tuple(array.shape) != spec.shape or array.dtype != spec.np_dtype:
        raise UsageError(f"input '{spec.name}' must be {spec.dtype}{list(spec.shape)}, "
                         f"got {array.dtype}{list(array.shape)}")


def load_inputs(manifest: Manifest | Mapping[str, Any], paths: list[str | Path]) -> dict[str, np.ndarray]:
    """Inputs from `.npy` files (one per model input, in order) or one `.npz` keyed by input name."""
    specs = as_manifest(manifest).model.inputs
    arrays: dict[str, np.ndarray] = {}
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"input file '{p}' does not exist")
    if len(paths) == 1 and str(paths[0]).endswith(".npz"):
        with np.load(paths[0]) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        if len(paths) != len(specs):
            raise UsageError(f"the model has {len(specs)} input(s) but {len(paths)} --input file(s) were given")
        for spec, p in zip(specs, paths):
            try:
                arrays[spec.name] = np.load(p, allow_pickle=False)
            except ValueError as exc:
                raise UsageError(f"cannot read '{p}' as a .npy array: {exc}") from None
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None:
            raise UsageError(f"no data for model input '{spec.name}'")
        _check(spec, array)
    return arrays
