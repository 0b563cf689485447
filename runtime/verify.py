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

A quantized output (the manifest has a `quantization` section) cannot equal the float model:
it is judged by its agreement instead (`agreement.py`: top-1 agreement, max/mean abs error),
and fails only when it is broken (wrong shapes, NaN/inf the float model has not). With a
labelled `dataset` (`dataset.py`) every sample runs through the program and the float model,
and the output fails when its top-1 accuracy drops by more than `max_drop` points; a float
plan must then also stay within `tolerance` on every sample, as strict as on one frame.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import EdgecError, ModelError, UsageError, first_line
from .agreement import (
    DEFAULT_MAX_DROP, AccuracyMeter, AgreementMeter, DatasetAccuracy, FloatModel, OutputAgreement, in_chunks,
)
from .dataset import Dataset
from .engines import checked_engine
from .inputs import check_inputs, load_inputs, random_inputs
from .outputs import CompiledOutput
from ..backends.replica_records import refuse_mpi_with_replicas

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
    (`stages`, `engine`, and `mpi`: whether the distributed run through mpirun was asked for). A quantized
    output is judged by `agreement` instead of `outputs`; `dataset` is the accuracy on `--dataset`."""

    outputs: list[OutputError]
    tolerance: float
    stages: int = 0
    engine: str = "onnxruntime"
    mpi: bool = False
    quantized: bool = False
    agreement: list[OutputAgreement] = field(default_factory=list)
    dataset: DatasetAccuracy | None = None
    replica_frames: int = 0
    """With replicated stages: frames 0 … n−1 were checked, so replica f mod r of every stage computed one."""

    @property
    def ok(self) -> bool:
        frames_ok = all(a.finite for a in self.agreement) if self.quantized else all(o.ok for o in self.outputs)
        return frames_ok and (self.dataset is None or self.dataset.ok)

    def to_json(self) -> dict[str, Any]:
        """The report as `edgec verify --json` prints it."""
        return {"ok": self.ok, "tolerance": self.tolerance, "stages": self.stages, "mpi": self.mpi,
                "engine": self.engine, "outputs": [dataclasses.asdict(o) for o in self.outputs],
                "quantized": self.quantized, "agreement": [a.to_json() for a in self.agreement],
                "dataset": self.dataset.to_json() if self.dataset is not None else None,
                **({"replica_frames": self.replica_frames} if self.replica_frames else {})}


def run_stages(compiled: CompiledOutput, feeds: dict[str, np.ndarray], engine: str = "onnxruntime",
               sessions: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """Run the split program in one process; returns the model outputs by name. `sessions` (one per stage,
    in rank order) are reused across calls; without them each stage's session is made now."""
    tensors: dict[str, np.ndarray] = dict(feeds)
    for stage in compiled.stages:
        session = sessions[stage.rank] if sessions is not None else compiled.engine_session(stage.rank, engine)
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
    dataset: str | Path | None = None,
    max_drop: float | None = None,
) -> VerifyReport:
    """Compare `engine`'s outputs for `feeds` with the unsplit model's: in one process, or with `mpi` (and
    always for whole-program engines) through mpirun. `feeds`: one frame of every input by name, the input
    files (one `.npy` per input, in order, or one `.npz`), or None for random inputs from `seed`. A quantized
    output reports its agreement with the float model instead (see the module's docstring). `dataset`: a
    labelled `.npz` (`dataset.py`) run sample by sample instead of `feeds`; fails past `max_drop` points
    (default `DEFAULT_MAX_DROP`) of top-1 accuracy lost."""
    if not tolerance >= 0:
        raise UsageError(f"--tolerance must be a relative error of 0 or more, not {tolerance}")
    if max_drop is not None and dataset is None:
        raise UsageError("--max-drop needs --dataset (the accuracy drop is measured on a labelled data set)")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise UsageError(f"--max-drop must be 0 or more percentage points of top-1 accuracy, not {max_drop}")
    if dataset is not None and feeds is not None:
        raise UsageError("--dataset and --input do not go together (the data set holds the inputs)")
    compiled = CompiledOutput.open(out)
    chosen = checked_engine(compiled, engine)
    reference = compiled.reference_model(model)
    quantized = compiled.manifest.quantization is not None or compiled.manifest.pruning is not None
    distributed = mpi or not chosen.per_stage
    if distributed:
        refuse_mpi_with_replicas(compiled.manifest, engine)
    if dataset is not None:
        report = _verify_dataset(compiled, Path(dataset), reference, engine, distributed, quantized, tolerance,
                                 DEFAULT_MAX_DROP if max_drop is None else max_drop)
        return dataclasses.replace(report, stages=len(compiled.stages), engine=engine, mpi=mpi)
    if compiled.manifest.replicas is not None:
        report = _verify_replicas(compiled, feeds, seed, reference, engine, quantized, tolerance, distributed)
        return dataclasses.replace(report, stages=len(compiled.stages), engine=engine, mpi=mpi)
    frames = _frames(compiled, feeds, seed)
    if distributed:
        actual = run_distributed(compiled, frames, engine)
    else:
        actual = run_stages(compiled, frames, engine)
    expected = run_reference(reference, frames, list(actual))
    if quantized:
        meter = AgreementMeter()
        meter.add(actual, expected)
        report = VerifyReport([], tolerance, quantized=True, agreement=meter.results())
    else:
        report = compare(actual, expected, tolerance)
    return dataclasses.replace(report, stages=len(compiled.stages), engine=engine, mpi=mpi)


def _verify_replicas(compiled: CompiledOutput, feeds: Feeds, seed: int, reference: Path, engine: str,
                     quantized: bool, tolerance: float, distributed: bool = False) -> VerifyReport:
    """Frames 0 … R−1 (R: the most replicas of any stage; random inputs from seed + f, or the given ones)
    in process, frame f through replica f mod r of each stage, loaded from that replica's own copy of
    the sub-model (`replicas[i].model`), each compared with the unsplit model; the worst error per output.
    `distributed`: the R frames go through one mpirun run instead, dealt to the replicas by the ranks."""
    dealt = max(len(s.replicas) for s in compiled.manifest.replicas.stages)
    inputs = [_frames(compiled, feeds, seed + frame) for frame in range(dealt)]
    if distributed:
        stacked = {name: np.stack([frames[name] for frames in inputs]) for name in inputs[0]}
        ran = checked_engine(compiled, engine).run(compiled.root, stacked, frames=dealt, keep_outputs=True).outputs
        computed = [{name: array[frame] for name, array in ran.items()} for frame in range(dealt)]
    else:
        sessions_for = _dealt_sessions(compiled, engine)
        computed = [run_stages(compiled, frames, engine, sessions_for(frame)) for frame, frames in enumerate(inputs)]
    agreement, worst = AgreementMeter(), {}
    for frames, actual in zip(inputs, computed):
        expected = run_reference(reference, frames, list(actual))
        agreement.add(actual, expected)
        for error in ([] if quantized else compare(actual, expected, tolerance).outputs):
            known = worst.get(error.name)
            worst[error.name] = error if known is None else OutputError(
                error.name, max(known.max_abs, error.max_abs), max(known.max_rel, error.max_rel), known.ok and error.ok)
    return VerifyReport(list(worst.values()), tolerance, quantized=quantized,
                        agreement=agreement.results() if quantized else [], replica_frames=dealt)


def _dealt_sessions(compiled: CompiledOutput, engine: str):
    """frame f → the sessions (one per stage) that compute it: replica f mod r of each replicated stage, on
    that replica's own sub-model file (`replicas[i].model`), else the stage's own session."""
    info = compiled.manifest.replicas
    own = [compiled.engine_session(stage.rank, engine) for stage in compiled.stages]
    if info is None:
        return lambda _frame: own
    copies = {(s.stage, r.replica): _replica_session(compiled, s.stage, r, engine)
              for s in info.stages for r in s.replicas[1:]}
    return lambda frame: [copies.get((k, frame % info.count(k)), session) for k, session in enumerate(own)]


def _replica_session(compiled: CompiledOutput, stage: int, replica, engine: str):
    """A further replica's session on its own file: its sub-model copy (onnxruntime) or its module (tvm)."""
    if engine == "tvm":
        from .tvm_stage import TvmSession

        return TvmSession.for_replica(compiled, stage, replica.replica, replica.threads)
    if engine != "onnxruntime":
        raise UsageError(f"in-process verify runs replicated stages with onnxruntime or tvm, not --engine {engine}",
                         hint="leave --engine out")
    model, threads = replica.model, replica.threads
    path = compiled.root / model
    if not path.is_file():
        raise UsageError(f"replica sub-model '{path}' is missing")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads or 1, 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load replica sub-model '{path}': {first_line(exc)}") from None


def _verify_dataset(compiled: CompiledOutput, path: Path, reference: Path, engine: str, distributed: bool,
                    quantized: bool, tolerance: float, max_drop: float) -> VerifyReport:
    """Every sample of the data set through the program and the float model, accumulated as it goes."""
    manifest = compiled.manifest
    scored = manifest.model.outputs[0]
    with Dataset(path, manifest, scored) as data:
        float_model = FloatModel(reference, [spec.name for spec in manifest.model.outputs])
        if distributed:
            runner = checked_engine(compiled, engine)
            results = in_chunks(data.samples(), lambda stacked, n: runner.run(
                compiled.root, stacked, frames=n, keep_outputs=True).outputs)
        else:
            sessions_for = _dealt_sessions(compiled, engine)
            results = ((feeds, run_stages(compiled, feeds, engine, sessions_for(n)), labels)
                       for n, (feeds, labels) in enumerate(data.samples()))
        agreement, accuracy = AgreementMeter(), AccuracyMeter(scored.name)
        worst: dict[str, OutputError] = {}
        for feeds, actual, labels in results:
            expected = float_model(feeds)
            agreement.add(actual, expected)
            accuracy.add(actual, expected, labels)
            if not quantized:
                for error in compare(dict(actual), expected, tolerance).outputs:
                    known = worst.get(error.name)
                    worst[error.name] = error if known is None else OutputError(
                        error.name, max(known.max_abs, error.max_abs), max(known.max_rel, error.max_rel),
                        known.ok and error.ok)
    return VerifyReport(list(worst.values()), tolerance, quantized=quantized, agreement=agreement.results(),
                        dataset=accuracy.result(path, max_drop))
