"""Calibration inputs, streamed through onnxruntime, reduced to per-channel statistics on the fly.

A calibration directory holds `.npy` files named after the model inputs (`images.npy`:
samples stacked on axis 0, or one input of the full shape) or `.npz` files whose arrays are
keyed by input name. Batches are fed at the model's own batch size and only running sums per
channel are kept (never every activation), so hundreds of samples cost the memory of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnx_ir as ir

from ...compiler.diagnostics import PlanError, SourceSpan
from ...compiler.array_files import read_npy, read_npz
from ...compiler.self_contained import self_contained_proto


def feeds(directory: str, graph: ir.Graph, limit: int, span: SourceSpan | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for the graph's inputs from `directory`, at most `limit` samples."""
    inputs = [v for v in graph.inputs if v.name not in graph.initializers]
    root = Path(directory)
    arrays: dict[str, list[np.ndarray]] = {v.name: [] for v in inputs}
    for path in sorted(root.glob("*.npy")):
        if path.stem in arrays:
            arrays[path.stem].append(read_npy(path))
    for path in sorted(root.glob("*.npz")):
        data = read_npz(path)
        for name in arrays:
            if name in data:
                arrays[name].append(data[name])
    missing = [n for n, found in arrays.items() if not found]
    if missing:
        raise PlanError(f"calibration directory '{directory}' has no data for input(s) {', '.join(missing)}", span,
                        hint="add NAME.npy (samples on axis 0) or .npz files keyed by input name")
    streams = {v.name: _samples(arrays[v.name], list(v.shape), v.name, directory, span) for v in inputs}
    batch = {v.name: int(v.shape[0]) if len(v.shape) else 1 for v in inputs}
    taken = 0
    while taken < limit:
        feed = {}
        for v in inputs:
            chunk = [next(streams[v.name], None) for _ in range(batch[v.name])]
            if any(c is None for c in chunk):
                return
            feed[v.name] = np.stack(chunk).astype(v.dtype.numpy()).reshape(list(v.shape))
        taken += max(batch.values())
        yield feed


def _samples(arrays: list[np.ndarray], shape: list[int], name: str, directory: str,
             span: SourceSpan | None) -> Iterator[np.ndarray]:
    for array in arrays:
        if list(array.shape) == shape:
            items = np.asarray(array).reshape([-1, *shape[1:]])
        elif list(array.shape[1:]) == shape[1:]:
            items = array
        else:
            raise PlanError(f"calibration data for '{name}' in '{directory}' has shape {list(array.shape)}; the input "
                            f"is {shape} (samples stacked on axis 0 are accepted)", span)
        for i in range(len(items)):
            yield np.asarray(items[i])


@dataclass
class Stats:
    """Running per-channel sums of one tensor: mean, mean |x|, mean x² (over every axis but `axis`)."""

    axis: int
    total: np.ndarray | None = None
    absolute: np.ndarray | None = None
    square: np.ndarray | None = None
    count: int = 0

    def add(self, x: np.ndarray) -> None:
        moved = np.moveaxis(x.astype(np.float64), self.axis, -1).reshape(-1, x.shape[self.axis])
        sums = (moved.sum(0), np.abs(moved).sum(0), (moved ** 2).sum(0))
        if self.total is None:
            self.total, self.absolute, self.square = sums
        else:
            self.total += sums[0]
            self.absolute += sums[1]
            self.square += sums[2]
        self.count += moved.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def mean_abs(self) -> np.ndarray:
        return self.absolute / self.count

    @property
    def var(self) -> np.ndarray:
        return np.maximum(self.square / self.count - self.mean ** 2, 0.0)


def session(model: ir.Model, outputs: list[ir.Value]):
    """An onnxruntime session of `model` that also returns `outputs` (intermediate values)."""
    import onnxruntime as ort

    proto = self_contained_proto(model)
    present = {o.name for o in proto.graph.output}
    for value in outputs:
        if value.name not in present:
            present.add(value.name)
            proto.graph.output.append(onnx.helper.make_tensor_value_info(
                value.name, int(value.dtype), list(value.shape)))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def collect(model: ir.Model, wanted: dict[ir.Value, int], batches: Iterator[dict[str, np.ndarray]]) -> dict[str, Stats]:
    """Per-channel statistics of each wanted value (value → channel axis), by value name."""
    values = list(wanted)
    if not values:
        return {}
    sess = session(model, values)
    names = [v.name for v in values]
    stats = {v.name: Stats(axis) for v, axis in wanted.items()}
    for feed in batches:
        for name, array in zip(names, sess.run(names, feed)):
            stats[name].add(array)
    return stats
