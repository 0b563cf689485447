"""Run the split-layer pass on a one-layer model and compare the rewritten graph with the original in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

import edgec
from edgec.compiler.annotations import PLACEMENT, SPLIT, Placement, SplitSpec
from edgec.compiler.platform import Device, Platform
from edgec.passes import SplitLayer
from edgec.compiler.facts import Fact

DEVICES = ("a", "b", "c", "d")


def split_program(model: onnx.ModelProto, nodes: list[str], kind: str, parts: int, *, grid=None, ratio=None,
                  merge: str | None = None) -> edgec.Program:
    platform = Platform()
    for d in DEVICES:
        platform.add(Device(d, cores=2))
    prog = edgec.Program(edgec.load_model(model), platform)
    spec = SplitSpec(kind, tuple(Placement(DEVICES[i % len(DEVICES)]) for i in range(parts)), grid,
                     tuple(ratio) if ratio else None, Placement(merge) if merge else None)
    for node in prog.nodes():
        node.meta[PLACEMENT] = Placement("d")
        if node.name in nodes:
            node.meta[SPLIT] = spec
    prog.facts.add(Fact.PLACED)
    return prog


def run(model: onnx.ModelProto | ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_split_equivalent(model: onnx.ModelProto, nodes: list[str], kind: str, parts: int, **kw) -> edgec.Program:
    feeds = {i.name: np.random.default_rng(0).standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
             .astype(np.float32) for i in model.graph.input}
    expected = run(model, feeds)
    prog = split_program(model, nodes, kind, parts, **kw)
    result = SplitLayer()(prog)
    assert result.modified
    prog.verify()
    actual = run(prog.model, feeds)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape
        scale = max(float(np.abs(want).max()), 1e-12)
        assert float(np.abs(got - want).max()) / scale <= 1e-4
    return prog
