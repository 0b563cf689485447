"""`edgec verify`: run every stage in one process and compare with the unsplit model.

Stages run in rank order (a topological order) in the chosen engine (onnxruntime by default);
boundary tensors are handed from producer to consumer by name, exactly as the ranks would over
MPI. With `mpi`, or an engine that only runs the whole program (cpp), one frame goes through the
real distributed program instead (`engines.Engine.run`). The unsplit source
model runs in onnxruntime on the same inputs. The error of an output is
`max|split - reference| / max|reference|` (relative to the output's scale, so tiny
reference values do not make it blow up); a split plan passes when every output is within
`tolerance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import EdgecError, ModelError, first_line
from .engines import checked_engine
from .outputs import CompiledOutput

DEFAULT_TOLERANCE = 1e-4


@dataclass
class OutputError:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass
class VerifyReport:
    outputs: list[OutputError]
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)


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


def verify(
    out: str | Path,
    feeds: dict[str, np.ndarray],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    model: str | Path | None = None,
    engine: str = "onnxruntime",
    mpi: bool = False,
) -> VerifyReport:
    """Compare `engine`'s outputs for `feeds` with the unsplit model's: in one process, or with
    `mpi` (and always for whole-program engines) through mpirun."""
    compiled = CompiledOutput.open(out)
    chosen = checked_engine(compiled, engine)
    reference = compiled.reference_model(model)
    if mpi or not chosen.per_stage:
        actual = run_distributed(compiled, feeds, engine)
    else:
        actual = run_stages(compiled, feeds, engine)
    expected = run_reference(reference, feeds, list(actual))
    return compare(actual, expected, tolerance)
