"""Read a compiled output directory back: its manifest and the stage sessions.

Shared by every way of running an output (in-process verify now, MPI ranks later), so they
all agree on what a stage consumes and produces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import ModelError, UsageError, first_line


ENGINES = ("onnxruntime", "tvm")


@dataclass
class CompiledOutput:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> "CompiledOutput":
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise UsageError(f"'{root}' is not an edgec output directory (no manifest.json)")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
        return cls(root, manifest)

    @property
    def stages(self) -> list[dict]:
        return self.manifest["stages"]

    def stage_model(self, rank: int) -> Path:
        path = self.root / self.stages[rank]["model"]
        if not path.is_file():
            raise UsageError(f"stage {rank}: sub-model '{path}' is missing")
        return path

    def session(self, rank: int, threads: int | None = None, *, spin: bool = True) -> ort.InferenceSession:
        """The stage's onnxruntime session; `spin=False` makes idle worker threads sleep, for ranks sharing cores."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or self.stages[rank].get("threads") or 1
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

    def engine_session(self, rank: int, engine: str, *, spin: bool = True):
        """A session-like object for the stage: onnxruntime's, or the TVM module's (same `run`/`get_inputs`)."""
        if engine == "onnxruntime":
            return self.session(rank, spin=spin)
        if engine == "tvm":
            from .tvm_stage import TvmSession

            return TvmSession.for_stage(self, rank, spin=spin)
        raise UsageError(f"unknown engine '{engine}' (engines: {', '.join(ENGINES)})")

    def reference_model(self, override: str | Path | None = None) -> Path:
        path = Path(override) if override else Path(self.manifest["model"].get("path") or "")
        if not override and not self.manifest["model"].get("path"):
            raise UsageError("the manifest records no source model path; pass --model")
        if not path.is_file():
            raise UsageError(f"reference model '{path}' not found; pass --model to point at the unsplit model")
        return path


def random_inputs(manifest: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in manifest["model"]["inputs"]:
        shape, dtype = spec["shape"], np.dtype(spec["dtype"])
        if dtype.kind == "f":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec["name"]] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec["name"]] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def load_inputs(manifest: dict, paths: list[str | Path]) -> dict[str, np.ndarray]:
    """Inputs from `.npy` files (one per model input, in order) or one `.npz` keyed by input name."""
    specs = manifest["model"]["inputs"]
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
                arrays[spec["name"]] = np.load(p, allow_pickle=False)
            except ValueError as exc:
                raise UsageError(f"cannot read '{p}' as a .npy array: {exc}") from None
    for spec in specs:
        array = arrays.get(spec["name"])
        if array is None:
            raise UsageError(f"no data for model input '{spec['name']}'")
        if list(array.shape) != spec["shape"] or array.dtype != np.dtype(spec["dtype"]):
            raise UsageError(
                f"input '{spec['name']}' must be {spec['dtype']}{spec['shape']}, got {array.dtype}{list(array.shape)}"
            )
    return arrays
