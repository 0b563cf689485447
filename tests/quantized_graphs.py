"""Tiny hand-made quantized models and plans that cut right on the quantized tensor.

`qdq(wire)`: x → Conv c1 → Relu r1 → q → dq → Conv c2 → GlobalAveragePool → Flatten out, where
q/dq is QuantizeLinear/DequantizeLinear (int8, uint8) or Cast(float16)/Cast(float). `PLAN`
places c1 .. q on device a and the rest on b, so `q` itself, 1 or 2 bytes an element,
crosses. `float_twin()` is the same network without q/dq (same weights): the float model a
quantized output is verified against. `compile_quantized` fills the Program's quantization
records by hand (as the quantize pass would) through a pass-manager hook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

import edgec
from edgec.compiler.program import StageQuantization, WireQuantization
from graphs import Net

PLAN = """
model "m.onnx"
input x [1, 3, 8, 8]
device a { arch x86_64 cores 1 mem 1GiB }
device b { arch x86_64 cores 1 mem 1GiB }
link a <-> b { bandwidth 100Mbit latency 1ms }
place c1 .. q on a.cpu
place * on b.cpu
"""

FLOAT_PLAN = PLAN.replace("c1 .. q", "c1 .. r1")
CLASSES = 4
ZERO_POINT = {"int8": 0, "uint8": 128}


def qdq(wire: str, scale: float = 0.05, seed: int = 0) -> onnx.ModelProto:
    net = Net({"x": [1, 3, 8, 8]}, seed=seed)
    net.conv("c1", "x", 3, 4)
    net.op("Relu", "r1", ["c1"])
    if wire == "float16":
        net.op("Cast", "q", ["r1"], to=TensorProto.FLOAT16)
        net.op("Cast", "dq", ["q"], to=TensorProto.FLOAT)
    else:
        net.const("s", np.array(scale, np.float32))
        net.tensor("z", np.array(ZERO_POINT[wire], dtype=wire))
        net.op("QuantizeLinear", "q", ["r1", "s", "z"])
        net.op("DequantizeLinear", "dq", ["q", "s", "z"])
    net.conv("c2", "dq", 4, CLASSES)
    net.op("GlobalAveragePool", "gap", ["c2"])
    net.op("Flatten", "out", ["gap"])
    return net.model(["out"])


def float_twin(seed: int = 0) -> onnx.ModelProto:
    net = Net({"x": [1, 3, 8, 8]}, seed=seed)
    net.conv("c1", "x", 3, 4)
    net.op("Relu", "r1", ["c1"])
    net.conv("c2", "r1", 4, CLASSES)
    net.op("GlobalAveragePool", "gap", ["c2"])
    net.op("Flatten", "out", ["gap"])
    return net.model(["out"])


def records(wire: str, scale: float = 0.05) -> tuple[list[StageQuantization], list[WireQuantization]]:
    """What the quantize pass records for `quantize wire WIRE` on this plan (filled by hand)."""
    stages = [StageQuantization(0, "a", "onnxruntime", "uint8", "int8", "per_channel", "minmax", ("c1",),
                                "onnxruntime runs QDQ convolutions as integer kernels only with uint8 activations",
                                bias_correction=True),
              StageQuantization(1, "b", "onnxruntime", "uint8", "int8", "per_tensor", "entropy", ("c2",),
                                "same engine as stage 0", equalization=True)]
    is_int = wire != "float16"
    wires = [WireQuantization("r1", "q", wire, scale if is_int else None, ZERO_POINT[wire] if is_int else None)]
    return stages, wires


def compile_quantized(directory: Path, wire: str, *, scale: float = 0.05, backends=("onnx",),
                      quantized: bool = True) -> Path:
    """Compile `qdq(wire)` on PLAN into directory/out; with `quantized`, its Program carries `records`.
    Writes the float twin to directory/float.onnx."""
    directory.mkdir(parents=True, exist_ok=True)
    model = directory / "m.onnx"
    onnx.save(qdq(wire, scale), model)
    onnx.save(float_twin(), directory / "float.onnx")
    stages, wires = records(wire, scale)

    def fill(_pass, program, _result) -> None:
        program.quantization, program.wire_quantization = list(stages), list(wires)

    out = directory / "out"
    edgec.compile(model, PLAN, out, backends=backends, hooks=[fill] if quantized else ())
    return out
