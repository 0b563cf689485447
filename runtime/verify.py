"""`edgec verify`: run every stage in one process and compare with the unsplit model.

`verify` is the one entry point, for the CLI and for Python alike: it takes the inputs as
arrays, as input files, or not at all (seeded random inputs), and returns a `VerifyReport`
that the CLI only prints. Stages run in rank order (a topological order) in the chosen engine
(onnxruntime by default); boundary tensors are handed from producer to consumer by name,
exactly as the ranks would over MPI. With `mpi`, or an engine that only runs the whole program
(cpp), one frame goes through the real distributed program instead (`engines.Engine.run`). The
unsplit source model runs in onnxruntime on the same inputs. The error of an output is
`max|split - reference| / max|reference|` (relative to the output's scale, so tiny
reference values do not make it blow up); a split plan passes when every output is within
`tolerance`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import EdgecError, ModelError, UsageError, first_line
from .engines import checked_engine
from .inputs import check_inputs, load_inputs, random_inputs
from .outputs import CompiledOutput

Feeds = Mapping[str, np.ndarray] | Sequence[str | os.PathLike] | str | os.PathLike | None
"""The inputs of `verify`: arrays by input name, input files (`edgec verify --input`), or None (random)."""

DEFAULT_TOLERANCE = 1e-4


@dataclass
class OutputError:
    """How far one graph output is from the reference: the largest absolute and relative error."""

    name: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass
class VerifyReport:
    """The outcome of `verify`: every output's error against `tolerance`, and how the split program ran
    (`stages`, `engine`, and `mpi`: whether the distributed run through mpirun was asked for)."""

    outputs: list[OutputError]
    tolerance: float
    stages: int = 0
    engine: str = "onnxruntime"
    mpi: bool = False

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        """The report as `edgec verify --json` prints it."""
        return {"ok": self.ok, "tolerance": self.tolerance, "stages": self.stages, "mpi": self.mpi,
                "engine": self.engine, "outputs": [dataclasses.asdict(o) for o in self.outputs]}


def run_stages(compiled: CompiledOutput, feeds: dict[str, np.ndarray], engine: str = "onnxruntime") -> dict[str, np.ndarray]:
    """Run the split program in one process; returns the model outputs by name."""
    tensors: dict[str, np.ndarray] = dict(feeds)
    for stage in compiled.stages:
        session = compiled.engine_session(stage.rank, engine)
        names = [i.name for i in session.get_inputs()]
        try:
            results = session.run(None, {n: tensors[n] for n in names})
        except EdgecError:
            raise
        except Exception as exc:
            raise ModelError(f"stage {stage.rank} failed in {engine}: {first_line(exc)}") from None
        tensors.update(zip((o.name for o in session.get_outputs()), results))
    return {spec.name: tensors[spec.name] for spec in compiled.manifest.model.outputs}


def run_distributed(compiled: CompiledOutput, feeds: dict[str, np.ndarray], engine: str = "onnxruntime",
                    **options) -> dict[str, np.ndarray]:
    """One frame through the real distributed program (mpirun); the model outputs by name."""
    result = checked_engine(compiled, engine).run(compiled.root, feeds, keep_outputs=True, **options)
    return {name: array[0] for name, array in result.outputs.items()}


def run_reference(model: Path, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        results = session.run(output_names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:
        raise ModelError(f"the reference model '{model}' failed in onnxruntime: {first_line(exc)}") from None
    return dict(zip(output_names, results))


def compare(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], tolerance: float) -> VerifyReport:
    errors = []
    for name, ref in expected.items():
        got = actual[name].astype(np.float64)
        ref64 = ref.astype(np.float64)
        abs_err = float(np.max(np.abs(got - ref64))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref64))) if ref.size else 0.0
        rel = abs_err / scale if scale > 0 else abs_err
        ok = got.shape == ref64.shape and bool(np.isfinite(got).all() == np.isfinite(ref64).all()) and rel <= tolerance
        errors.append(OutputError(name, abs_err, rel, ok))
    return VerifyReport(errors, tolerance)


def _frames(compiled: CompiledOutput, feeds: Feeds, seed: int) -> dict[str, np.ndarray]:
    if feeds is None:
        return random_inputs(compiled.manifest, seed)
    if isinstance(feeds, Mapping):
        return check_inputs(compiled.manifest, feeds)
    paths = [feeds] if isinstance(feeds, (str, os.PathLike)) else list(feeds)
    return load_inputs(compiled.manifest, paths)


def verify(
    out: str | Path,
    feeds: Feeds = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    model: str | Path | None = None,
    engine: str = "onnxruntime",
    mpi: bool = False,
    seed: int = 0,
) -> VerifyReport:
    """Compare `engine`'s outputs for `feeds` with the unsplit model's: in one process, or with `mpi` (and
    always for whole-program engines) through mpirun. `feeds`: one frame of every input by name, the input
    files (one `.npy` per input, in order, or one `.npz`), or None for random inputs from `seed`."""
    if not tolerance >= 0:
        raise UsageError(f"--tolerance must be a relative error of 0 or more, not {tolerance}")
    compiled = CompiledOutput.open(out)
    chosen = checked_engine(compiled, engine)
    reference = compiled.reference_model(model)
    frames = _frames(compiled, feeds, seed)
    if mpi or not chosen.per_stage:
        actual = run_distributed(compiled, frames, engine)
    else:
        actual = run_stages(compiled, frames, engine)
    expected = run_reference(reference, frames, list(actual))
    report = compare(actual, expected, tolerance)
    return dataclasses.replace(report, stages=len(compiled.stages), engine=engine, mpi=mpi)
