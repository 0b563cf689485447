"""Helpers shared by the TVM backend tests: one-node ONNX graphs, onnxruntime references, errors.

Why one-node graphs: each exercises one path of the CPU pipeline (conv schedule, layout
conversion, folded BatchNorm, generic schedules) in well under a second, so corner cases
(odd channel counts, strides, dilation, groups) are cheap to cover next to the zoo models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.backends.tvm.runtime_cache import fetch_runtime
from edgec.compiler.annotations import PLACEMENT, Placement
from edgec.compiler.diagnostics import UsageError
from edgec.compiler.facts import Fact
from edgec.compiler.pass_manager import PassManager
from edgec.compiler.platform import Device, Platform
from edgec.passes import Canonicalize, FoldBatchNorm

TOLERANCE = 1e-4


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|a - b| / max|b|, as `edgec verify` reports it."""
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale


def ort_run(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def single_op_model(path: Path, nodes: list, inputs: dict[str, list[int]], weights: dict[str, np.ndarray],
                    outputs: list[str], opset: int = 13) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(w, n) for n, w in weights.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    onnx.save(model, path)
    return path


def conv_relu_model(path: Path, cin: int, cout: int, size: int) -> Path:
    """A 3x3 conv (pad 1, seeded weights and bias) + ReLU on a [1, cin, size, size] input, as the
    tvm backend receives it (`through_passes`)."""
    rng = np.random.default_rng(0)
    single_op_model(path, [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"])], {"x": [1, cin, size, size]},
                    {"w": rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.1,
                     "b": rng.standard_normal(cout).astype(np.float32)}, ["y"])
    return through_passes(path)


def through_passes(path: Path) -> Path:
    """`path` as the tvm backend receives a stage: after canonicalize and fold-batchnorm (`<name>.ir.onnx`)."""
    platform = Platform()
    platform.add(Device("host"))
    program = edgec.Program(edgec.load_model(path), platform)
    for node in program.nodes():
        node.meta[PLACEMENT] = Placement("host")
    program.facts.add(Fact.PLACED)
    PassManager([Canonicalize(), FoldBatchNorm()]).run(program)
    out = path.with_suffix(".ir.onnx")
    onnx.save(ir.to_proto(program.model), out)
    return out


def random_feeds(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim]).astype(np.float32)
            for v in model.graph.input if v.name not in inits}


def aarch64_runtime() -> Path:
    """The cached aarch64 TVM runtime, fetched now if `make setup` did not; skip only if that fails."""
    try:
        return fetch_runtime("aarch64")
    except UsageError as exc:
        pytest.skip(f"the aarch64 TVM runtime is not cached and cannot be fetched: {exc.message}")
