"""Helpers for the quantize tests: a calibration folder, a compile without output, ops of a program."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

import edgec
from edgec.passes import Quantize, SplitLayer, SplitVertical
from edgec.compiler.self_contained import self_contained_proto


def calibration(folder: Path, shapes: dict[str, list[int]], count: int = 16, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():
        np.save(folder / f"{name}.npy", rng.standard_normal((count, *shape)).astype(np.float32))
    return folder


def quantized(model: onnx.ModelProto, plan: str, **options) -> edgec.Program:
    """The program after split-layer, split and quantize (no comm-insert, so the graph runs in onnxruntime)."""
    passes = [SplitLayer(), SplitVertical(), Quantize(**options)]
    return edgec.compile(model, plan, None, passes=passes).program


def ops(program: edgec.Program) -> list[str]:
    return [n.op_type for n in program.nodes()]


def node_inputs(program: edgec.Program, name: str) -> list[ir.Node | None]:
    return [v.producer() if v is not None else None for v in program.node(name).inputs]


def run(model: onnx.ModelProto | ir.Model | edgec.Program, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    if isinstance(model, edgec.Program):
        model = model.model
    proto = self_contained_proto(model) if isinstance(model, ir.Model) else model
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def staged(model, plan: str) -> edgec.Program:
    """The program lowered from `plan` and split into stages, not yet quantized (for running the pass by hand)."""
    from edgec.compiler.pass_manager import PassManager

    program = edgec.load_program(model, edgec.load_plan(plan))
    PassManager([SplitVertical()]).run(program)
    return program
