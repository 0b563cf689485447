"""Bias correction and cross-layer equalization: each keeps the float function, and each lowers the
error it is meant to lower."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgec.passes.quantize.equalization import equalize
from edgec.passes.quantize.selection import requests_by_node
from edgec.compiler.annotations import QUANTIZE_REQUESTS
from graphs import Net
from qhelpers import calibration, quantized, run, staged


def _dwsep() -> onnx.ModelProto:
    """pointwise → Relu → depthwise (channel ranges 0.01 … 10) → Relu → pointwise."""
    net = Net({"x": [1, 4, 8, 8]}, seed=2)
    net.conv("pw1", "x", 4, 8, k=1)
    net.op("Relu", "r1", ["pw1"])
    dw = net.rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * np.logspace(-2, 1, 8, dtype=np.float32)[:, None, None, None]
    net.op("Conv", "dw", ["r1", net.const("dw.w", dw), net.const("dw.b", np.full(8, 0.1))], group=8, pads=[1, 1, 1, 1])
    net.op("Relu", "r2", ["dw"])
    net.conv("pw2", "r2", 8, 6, k=1)
    return net.model(["pw2"])


def _plan(cal, extra: str = "", granularity: str = "") -> str:
    return f'device a {{}}\nplace * on a\nquantize a int8 {granularity} calibrate "{cal}" {extra}\n'


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    return calibration(tmp_path_factory.mktemp("cal"), {"x": [1, 4, 8, 8]}, count=64)


def _errors(program, model, cal):
    """Mean |error| and |mean error| per output channel over the calibration samples."""
    xs = np.load(cal / "x.npy")[:32]
    diffs = np.stack([run(program, {"x": x})[0] - run(model, {"x": x})[0] for x in xs])
    return float(np.abs(diffs).mean()), float(np.abs(diffs.mean(axis=(0, 1, 3, 4))).mean())


def test_equalization_keeps_the_float_function(cal):
    model = _dwsep()
    program = staged(model, _plan(cal, "equalize"))
    pairs = equalize(program, requests_by_node(program, program.model.meta[QUANTIZE_REQUESTS]))
    assert pairs == 2
    x = np.load(cal / "x.npy")[0]
    assert np.allclose(run(program, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
    w = program.node("dw").inputs[1].const_value.numpy()
    ranges = np.abs(w).reshape(8, -1).max(axis=1)
    assert ranges.max() / ranges.min() < 100  # was 1000 before equalization


def test_equalization_lowers_per_tensor_error(cal):
    model = _dwsep()
    plain = _errors(quantized(model, _plan(cal, granularity="per_tensor")), model, cal)[0]
    equalized = quantized(model, _plan(cal, "equalize", granularity="per_tensor"))
    assert equalized.quantization[0].equalization
    assert _errors(equalized, model, cal)[0] < 0.85 * plain


def test_bias_correction_removes_the_mean_shift(cal):
    model = _dwsep()
    plain = quantized(model, _plan(cal, granularity="per_tensor"))
    corrected = quantized(model, _plan(cal, "correct_bias", granularity="per_tensor"))
    assert corrected.quantization[0].bias_correction
    assert corrected.pass_log[-1]["summary"]
    bias = corrected.node("pw1").inputs[2].producer()
    assert bias.op_type == "DequantizeLinear" and bias.inputs[0].const_value.numpy().dtype == np.int32
    assert _errors(corrected, model, cal)[1] < 0.5 * _errors(plain, model, cal)[1]
