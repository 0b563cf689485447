"""The activation-type rule: uint8 for onnxruntime on x86, int8 for TVM and on aarch64, symmetric
int8 for VTA; the choice and its reason are recorded per stage."""

from __future__ import annotations

import numpy as np
import pytest

import edgec
from edgec.compiler.annotations import TARGET_BACKENDS, QuantizeRequest
from edgec.compiler.diagnostics import PlanError
from edgec.compiler.platform import Device, Platform
from edgec.passes import Quantize, SplitVertical
from edgec.passes.quantize.activation_type import choose
from edgec.passes.quantize.params import activation_params, weight_scales
from graphs import Net
from qhelpers import calibration, staged


def _platform() -> Platform:
    platform = Platform()
    platform.add(Device("pc", arch="x86_64"))
    platform.add(Device("pi", arch="aarch64"))
    platform.add(Device("fpga", arch="armv7", accel="vta"))
    return platform


@pytest.mark.parametrize("device, resource, backends, engine, expected", [
    ("pc", "cpu", ("onnx",), "auto", ("uint8", "onnxruntime", False)),
    ("pi", "cpu", ("onnx",), "auto", ("int8", "onnxruntime", False)),
    ("pc", "cpu", ("onnx", "tvm"), "auto", ("int8", "tvm", False)),
    ("pc", "cpu", ("onnx", "cpp"), "auto", ("int8", "tvm", False)),
    ("pc", "cpu", ("onnx", "tvm"), "onnxruntime", ("uint8", "onnxruntime", False)),
    ("fpga", "vta", ("onnx",), "auto", ("int8", "vta", True)),
])
def test_rule(device, resource, backends, engine, expected):
    choice = choose(QuantizeRequest("int8"), _platform(), device, resource, backends, engine)
    assert (choice.dtype, choice.engine, choice.symmetric) == expected and choice.reason


def test_uint8_asked_for_is_kept_except_on_vta():
    assert choose(QuantizeRequest("uint8"), _platform(), "pi", "cpu", ("tvm",)).dtype == "uint8"
    with pytest.raises(PlanError, match="VTA"):
        choose(QuantizeRequest("uint8"), _platform(), "fpga", "vta", ())


def test_backends_of_the_compile_decide_the_stage_type(tmp_path):
    net = Net({"x": [1, 2, 4, 4]})
    net.conv("c", "x", 2, 2)
    cal = calibration(tmp_path / "c", {"x": [1, 2, 4, 4]})
    plan = f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{cal}"\n'
    program = staged(net.model(["c"]), plan)
    program.model.meta[TARGET_BACKENDS] = ("onnx", "tvm")
    Quantize()(program)
    record, = program.quantization
    assert (record.activation_dtype, record.engine) == ("int8", "tvm")
    q = program.node("x/QuantizeLinear")
    assert q.outputs[0].dtype.name == "INT8"


def test_vta_stage_is_symmetric_int8(tmp_path):
    net = Net({"x": [1, 2, 4, 4]})
    net.op("Relu", "r", [net.conv("c", "x", 2, 2)])
    net.conv("c2", "r", 2, 2)
    cal = calibration(tmp_path / "c", {"x": [1, 2, 4, 4]})
    plan = f'device f {{ accel vta }}\nplace * on f.vta\nquantize f int8 calibrate "{cal}"\n'
    program = edgec.compile(net.model(["c2"]), plan, None, passes=[SplitVertical(), Quantize()]).program
    assert program.quantization[0].engine == "vta" and "power of two" in program.quantization[0].reason
    scales = []
    for node in program.nodes():
        if node.op_type == "QuantizeLinear":
            assert node.outputs[0].dtype.name == "INT8" and int(node.inputs[2].const_value.numpy()) == 0
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scales.extend(np.ravel(node.inputs[1].const_value.numpy()).tolist())
    exponents = np.log2(scales)
    assert len(scales) > 4 and np.array_equal(exponents, np.round(exponents)), scales


def test_vta_scales_are_the_next_power_of_two_up():
    assert activation_params(-3.0, 5.0, "int8", symmetric=True, power_of_two=True).scale == 2.0 ** -4  # 5/127 → 1/16
    assert activation_params(-3.0, 5.0, "int8", symmetric=True).scale == pytest.approx(5 / 127)
    w = np.array([[0.5, -1.0], [0.25, 0.0], [0.0, 0.0]])
    assert weight_scales(w, 0, power_of_two=True).tolist() == [2.0 ** -6, 2.0 ** -8, 1.0]
