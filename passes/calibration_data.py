"""Calibration samples read from a folder, one at a time: quantize's range collection and prune's
per-channel statistics read them alike.

A folder holds, per model input, `<input>.npy` (input names with `/` or `:` use `_`), or `.npz`
files whose keys are input names. An array of exactly the input's shape is one sample; otherwise
its first axis counts samples — each of the input's shape, or, for an input whose first (batch)
dimension is B, of B rows at a time. `.npy` files are memory-mapped, so a few thousand samples
cost no more memory than one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..compiler.annotations import calibration_stem
from ..compiler.array_files import read_npy, read_npz
from ..compiler.diagnostics import UsageError


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


class CalibrationData:
    """The samples of one calibration folder for a model's inputs; `limit` caps how many are used."""

    def __init__(self, folder: str | Path, inputs: Sequence[ModelInput], limit: int | None = None) -> None:
        self.folder = Path(folder)
        self.inputs = list(inputs)
        self.arrays = {i.name: self._array(i) for i in self.inputs}
        counts = {name: len(chunks) for name, chunks in self.arrays.items()}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise UsageError(f"calibration folder '{self.folder}' has different sample counts per input ({listed})")
        total = next(iter(counts.values()), 0)
        self.count = min(total, limit) if limit else total

    def _array(self, model_input: ModelInput) -> "_Samples":
        path = self.folder / f"{calibration_stem(model_input.name)}.npy"
        if not path.is_file():
            path = self.folder / f"{model_input.name}.npy"
        if path.is_file():
            return _Samples([read_npy(path)], model_input, path)
        parts = []
        for archive in sorted(self.folder.glob("*.npz")):
            data = read_npz(archive)
            if model_input.name in data:
                parts.append(data[model_input.name])
        if not parts:
            raise UsageError(f"calibration folder '{self.folder}' has no data for input '{model_input.name}'")
        return _Samples(parts, model_input, self.folder)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for k in range(self.count):
            yield {name: samples[k] for name, samples in self.arrays.items()}


class _Samples:
    """Indexable samples of one input across its arrays, each sample of the input's shape and dtype."""

    def __init__(self, arrays: list[np.ndarray], model_input: ModelInput, where: Path) -> None:
        self.input = model_input
        shape = model_input.shape
        self.views: list[tuple[np.ndarray, int]] = []
        for array in arrays:
            if tuple(array.shape) == shape:
                self.views.append((array[None], 1))
            elif tuple(array.shape[1:]) == shape:
                self.views.append((array, 1))
            elif shape and tuple(array.shape[1:]) == shape[1:] and array.shape[0] % shape[0] == 0:
                self.views.append((array, shape[0]))
            else:
                raise UsageError(f"calibration data '{where}' for input '{model_input.name}' has shape "
                                 f"{list(array.shape)}, which is neither the input's shape {list(shape)} nor samples of it")
        self.sizes = [len(a) // step for a, step in self.views]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, k: int) -> np.ndarray:
        for (array, step), size in zip(self.views, self.sizes):
            if k < size:
                rows = array[k] if step == 1 else array[k * step:(k + 1) * step]
                return np.ascontiguousarray(rows, dtype=self.input.dtype).reshape(self.input.shape)
            k -= size
        raise IndexError(k)


def for_program(program, folder: str | Path, limit: int | None = None) -> CalibrationData:
    """The calibration samples of `folder` for the program's graph inputs (shapes and dtypes from the graph)."""
    return for_graph(program.graph, folder, limit)


def for_graph(graph, folder: str | Path, limit: int | None = None) -> CalibrationData:
    inputs = [ModelInput(v.name, tuple(v.shape), np.dtype(v.dtype.numpy())) for v in graph.inputs
              if v.name not in graph.initializers]
    return CalibrationData(folder, inputs, limit)
