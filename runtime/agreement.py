"""How close a compiled program is to the float model: the measure `edgec verify` uses on quantized plans.

A quantized program cannot equal the float model, so equality within a tolerance is the wrong
test. What matters is whether it still decides the same: per graph output, the *top-1
agreement* (the argmax over the output's last axis, compared row by row: the fraction of rows
whose largest entry is the same element) and the max and mean absolute error. For class
scores a row is one prediction; for outputs that are not class scores (a feature map, boxes,
an embedding) the argmax over the last axis has no meaning of its own, and the errors are the
figures to read.

With a labelled data set (`dataset.py`) the first graph output is taken as the class scores:
the top-1 accuracy of the float model and of the compiled program, their difference in
percentage points (the *drop*) and the number of changed predictions. Everything is
accumulated sample by sample (`AgreementMeter`, `AccuracyMeter`), and samples go through the
program one at a time in one process, or in chunks of `CHUNK` frames through mpirun.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import ModelError, first_line

CHUNK = 64
"""Samples per mpirun launch when a data set runs through the distributed program: bounds memory, and
amortizes the launch (about a second) over many frames."""

DEFAULT_MAX_DROP = 1.0
"""`--max-drop`: the largest top-1 accuracy drop (percentage points) a compiled program may show on a data set."""

Outputs = Mapping[str, np.ndarray]


def top1(array: np.ndarray) -> np.ndarray:
    """The argmax over the last axis, one per row, flattened: `[1, 10]` → 1 prediction, `[1, 4, 8]` → 4."""
    if array.ndim == 0:
        return np.zeros(1, np.int64)
    return np.argmax(array.reshape(-1, array.shape[-1]), axis=-1)


@dataclass
class OutputAgreement:
    """One graph output against the float model, over every frame compared: top-1 agreement of its rows,
    the largest and mean absolute error, and the largest error relative to the float output's scale. `finite`:
    the shapes match and the program has NaN/inf exactly where the float model has (a broken program has not)."""

    name: str
    top1_agreement: float
    rows: int
    max_abs: float
    mean_abs: float
    max_rel: float
    finite: bool

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class AgreementMeter:
    """Accumulates `OutputAgreement` frame by frame (running max, sums and counts, no frame kept)."""

    def __init__(self) -> None:
        self._stats: dict[str, dict[str, float]] = {}

    def add(self, actual: Outputs, expected: Outputs) -> None:
        for name, ref in expected.items():
            got = np.asarray(actual[name], np.float64)
            ref = np.asarray(ref, np.float64)
            s = self._stats.setdefault(name, dict(agree=0, rows=0, max_abs=0.0, sum_abs=0.0, count=0,
                                                  max_rel=0.0, finite=True))
            if got.shape != ref.shape:
                s["finite"] = False
                continue
            s["finite"] = s["finite"] and bool((np.isfinite(got) == np.isfinite(ref)).all())
            err = np.abs(got - ref)
            max_abs = float(err.max()) if err.size else 0.0
            scale = float(np.abs(ref).max()) if ref.size else 0.0
            s["max_abs"] = max(s["max_abs"], max_abs)
            s["max_rel"] = max(s["max_rel"], max_abs / scale if scale > 0 else max_abs)
            s["sum_abs"] += float(err.sum())
            s["count"] += err.size
            rows_got, rows_ref = top1(got), top1(ref)
            s["agree"] += int((rows_got == rows_ref).sum())
            s["rows"] += len(rows_ref)

    def results(self) -> list[OutputAgreement]:
        return [OutputAgreement(name, s["agree"] / s["rows"] if s["rows"] else 0.0, int(s["rows"]), s["max_abs"],
                                s["sum_abs"] / s["count"] if s["count"] else 0.0, s["max_rel"], bool(s["finite"]))
                for name, s in self._stats.items()]


@dataclass
class DatasetAccuracy:
    """Top-1 accuracy of the float model and of the compiled program on a labelled data set, the drop in
    percentage points, and the predictions that changed (compiled argmax ≠ float argmax)."""

    path: str
    output: str
    samples: int
    rows: int
    float_correct: int
    compiled_correct: int
    changed: int
    max_drop: float

    @property
    def float_accuracy(self) -> float:
        return 100.0 * self.float_correct / self.rows if self.rows else 0.0

    @property
    def compiled_accuracy(self) -> float:
        return 100.0 * self.compiled_correct / self.rows if self.rows else 0.0

    @property
    def drop(self) -> float:
        return self.float_accuracy - self.compiled_accuracy

    @property
    def ok(self) -> bool:
        return self.drop <= self.max_drop

    def to_json(self) -> dict:
        return {"path": self.path, "output": self.output, "samples": self.samples, "predictions": self.rows,
                "float_top1_pct": self.float_accuracy, "compiled_top1_pct": self.compiled_accuracy,
                "drop_points": self.drop, "max_drop_points": self.max_drop, "changed_predictions": self.changed,
                "ok": self.ok}


class AccuracyMeter:
    """Counts correct and changed predictions of `output`, sample by sample."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.samples = self.rows = self.float_correct = self.compiled_correct = self.changed = 0

    def add(self, actual: Outputs, expected: Outputs, labels: np.ndarray) -> None:
        got, ref = top1(np.asarray(actual[self.output])), top1(np.asarray(expected[self.output]))
        self.samples += 1
        self.rows += len(labels)
        self.float_correct += int((ref == labels).sum())
        self.compiled_correct += int((got == labels).sum())
        self.changed += int((got != ref).sum())

    def result(self, path: str | Path, max_drop: float) -> DatasetAccuracy:
        return DatasetAccuracy(str(path), self.output, self.samples, self.rows, self.float_correct,
                               self.compiled_correct, self.changed, max_drop)


class FloatModel:
    """The unsplit float model in onnxruntime, one session for every sample."""

    def __init__(self, path: Path, output_names: list[str]) -> None:
        self.path, self.output_names = path, output_names
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"the reference model '{path}' failed in onnxruntime: {first_line(exc)}") from None
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, feeds: Outputs) -> dict[str, np.ndarray]:
        try:
            results = self.session.run(self.output_names, {k: v for k, v in feeds.items() if k in self.input_names})
        except Exception as exc:
            raise ModelError(f"the reference model '{self.path}' failed in onnxruntime: {first_line(exc)}") from None
        return dict(zip(self.output_names, results))


def in_chunks(samples: Iterable[tuple[dict[str, np.ndarray], np.ndarray]],
              run_frames: Callable[[dict[str, np.ndarray], int], Outputs],
              chunk: int = CHUNK) -> Iterator[tuple[dict[str, np.ndarray], Outputs, np.ndarray]]:
    """(feeds, compiled outputs, labels) per sample, running `run_frames(stacked feeds, frames)` once per
    `chunk` samples (for the distributed program, whose every launch costs a start-up)."""
    batch: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    def flush() -> Iterator[tuple[dict[str, np.ndarray], Outputs, np.ndarray]]:
        stacked = {name: np.stack([feeds[name] for feeds, _ in batch]) for name in batch[0][0]}
        outputs = run_frames(stacked, len(batch))
        for j, (feeds, labels) in enumerate(batch):
            yield feeds, {name: array[j] for name, array in outputs.items()}, labels

    for item in samples:
        batch.append(item)
        if len(batch) == chunk:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
