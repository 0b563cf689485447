"""Helpers of the C++/MPI backend tests: compiled outputs with TVM modules and a built program.

Why a module of its own: the golden tests need the ONNX-only output, the run tests the built one,
and both share how the example is compiled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edgec
from edgec.backends.cpp_mpi import build, write_cpp
from edgec.backends.tvm import compile_directory
from edgec.backends.tvm.runtime_cache import fetch_runtime
from edgec.compiler.diagnostics import UsageError
from tiny_cnn import build as build_tiny

TOLERANCE = 1e-4
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def tiny_output(directory: Path) -> Path:
    """The example CNN on its own plan (4 stages on 3 devices), ONNX sub-models only."""
    model = directory / "tiny_cnn.onnx"
    onnx.save(build_tiny(), model)
    out = directory / "out"
    edgec.compile(model, (EXAMPLES / "tiny_cnn.edge").read_text(), out)
    return out


def built(out: Path) -> Path:
    compile_directory(out)
    write_cpp(out)
    build(out)
    return out


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|a - b| / max|b|, as `edgec verify` reports it."""
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale


def reference(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})))


def aarch64_runtime() -> Path:
    """The cached aarch64 TVM runtime, fetched now if `make setup` did not; skip only if that fails."""
    try:
        return fetch_runtime("aarch64")
    except UsageError as exc:
        pytest.skip(f"the aarch64 TVM runtime is not cached and cannot be fetched: {exc.message}")
