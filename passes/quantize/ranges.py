"""Streaming range collection: the float model runs over the calibration samples in onnxruntime and
each observed tensor keeps a running summary — a min/max pair, or a fixed-bin histogram — never
the activations themselves, so a few hundred samples cost the memory of one.

`minmax` is one pass; `mse` is two (min/max, then a 2048-bin histogram over that range, which
`mse_search` reads); `percentile` and `entropy` are onnxruntime's own calibrators
(`onnxruntime.quantization.calibrate`), fed in chunks of `CHUNK` samples: their collector merges
histograms across `collect_data` calls, which hold only one chunk's outputs at a time.
The model observed is the program's graph as it stands when the pass runs (after the splits), so
each part of a split layer gets its own range.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import onnx

from ...compiler.diagnostics import PassError
from ...compiler.program import Program
from ..calibration_data import CalibrationData
from .params import Histogram
from ...compiler.self_contained import self_contained_proto

HISTOGRAM_BINS = 2048
CHUNK = 16
ORT_METHODS = {"percentile": "Percentile", "entropy": "Entropy"}


def observed_model(program: Program, tensors: Iterable[str]) -> onnx.ModelProto:
    """The program's model serialized with `tensors` as extra graph outputs."""
    proto = self_contained_proto(program.model)
    values = {v.name: v for n in program.nodes() for v in n.outputs}
    have = {o.name for o in proto.graph.output}
    for name in tensors:
        if name in have or name not in values:
            continue
        value = values[name]
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, int(value.dtype), list(value.shape)))
        have.add(name)
    return proto


def _session(proto: onnx.ModelProto, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_observed(program: Program, tensors: list[str], data: CalibrationData) -> Iterator[dict[str, np.ndarray]]:
    """Each calibration sample's values of `tensors` (graph inputs included), one sample at a time."""
    inputs = {i.name for i in data.inputs}
    session = _session(observed_model(program, [t for t in tensors if t not in inputs]))
    outputs = [t for t in tensors if t not in inputs]
    for feeds in data:
        got = dict(zip(outputs, session.run(outputs, feeds))) if outputs else {}
        got.update({t: feeds[t] for t in tensors if t in inputs})
        yield got


def collect_minmax(program: Program, tensors: list[str], data: CalibrationData) -> dict[str, tuple[float, float]]:
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    for values in run_observed(program, tensors, data):
        for name, array in values.items():
            lo[name] = min(lo[name], float(array.min()))
            hi[name] = max(hi[name], float(array.max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def collect_histograms(program: Program, tensors: list[str], data: CalibrationData,
                       ranges: dict[str, tuple[float, float]]) -> dict[str, Histogram]:
    """A `HISTOGRAM_BINS` histogram of every tensor over its (min, max) range (counts, bin edges)."""
    edges = {t: np.linspace(min(ranges[t][0], 0.0), max(ranges[t][1], 0.0) or 1.0, HISTOGRAM_BINS + 1) for t in tensors}
    counts = {t: np.zeros(HISTOGRAM_BINS, dtype=np.int64) for t in tensors}
    for values in run_observed(program, tensors, data):
        for name, array in values.items():
            counts[name] += np.histogram(array, bins=edges[name])[0]
    return {t: Histogram(counts[t], edges[t]) for t in tensors}


def collect_with_onnxruntime(program: Program, tensors: list[str], data: CalibrationData,
                             method: str) -> dict[str, tuple[float, float]]:
    """Ranges from onnxruntime's Percentile or Entropy calibrator, fed `CHUNK` samples per call."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    class Chunk(CalibrationDataReader):
        def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
            self.samples = iter(samples)

        def get_next(self):
            return next(self.samples, None)

    with tempfile.TemporaryDirectory(prefix="edgec-calib-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(observed_model(program, []), path)
        try:
            calibrator = create_calibrator(path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=getattr(CalibrationMethod, ORT_METHODS[method]),
                                           extra_options={"symmetric": False, "num_bins": HISTOGRAM_BINS})
            with contextlib.redirect_stdout(io.StringIO()):  # its progress lines are not edgec's output
                chunk: list[dict[str, np.ndarray]] = []
                for feeds in data:
                    chunk.append(feeds)
                    if len(chunk) == CHUNK:
                        calibrator.collect_data(Chunk(chunk))
                        chunk = []
                if chunk:
                    calibrator.collect_data(Chunk(chunk))
                result = calibrator.compute_data()
        except Exception as exc:
            raise PassError(f"onnxruntime's {method} calibrator failed: {type(exc).__name__}: {exc}", pass_name="quantize",
                            ran=[], hint="use `method minmax` or `method mse` (edgec's own)") from exc
    ranges = {}
    for t in tensors:
        if t not in result.data:
            raise PassError(f"onnxruntime's {method} calibrator gave no range for '{t}'", pass_name="quantize", ran=[],
                            hint="use `method mse` (edgec's own)")
        lo, hi = result.data[t].range_value
        ranges[t] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return ranges
