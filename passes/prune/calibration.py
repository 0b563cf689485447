"""Calibration inputs, streamed through onnxruntime, reduced to per-channel statistics on the fly.

The calibration folder is read as quantize reads it (`passes/calibration_data.py`: `.npy` per input,
samples on axis 0, or `.npz` keyed by input name). Batches are fed at the model's own batch size and
only running sums per channel are kept (never every activation), so hundreds of samples cost the
memory of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnx_ir as ir

from ...compiler.diagnostics import PlanError, SourceSpan, UsageError
from ..calibration_data import for_graph
from ...compiler.self_contained import self_contained_proto


def feeds(directory: str, graph: ir.Graph, limit: int, span: SourceSpan | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for the graph's inputs from `directory` (the folder rules of `passes/calibration_data.py`), whole
    inputs at the model's own batch size, until at least `limit` rows (samples on the batch axis) are fed."""
    try:
        data = for_graph(graph, directory)
    except UsageError as exc:
        raise PlanError(exc.message, span, hint="add NAME.npy (samples on axis 0) or .npz files keyed by input name"
                        ) from None
    rows = max([int(v.shape[0]) if len(v.shape) else 1 for v in graph.inputs if v.name not in graph.initializers],
               default=1)
    for taken, feed in enumerate(data):
        if taken * rows >= limit:
            return
        yield feed


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
