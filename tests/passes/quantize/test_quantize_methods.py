"""Calibration methods (minmax, mse, onnxruntime's percentile and entropy) and the streaming reader."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.passes.calibration_data import CalibrationData, ModelInput
from graphs import Net
from qhelpers import calibration, quantized, run


def _model():
    net = Net({"x": [1, 3, 8, 8]})
    net.conv("c1", "x", 3, 8)
    net.op("Relu", "r1", ["c1"])
    net.conv("c2", "r1", 8, 4)
    return net.model(["c2"])


def _scale(program, name: str) -> float:
    return float(program.node(f"{name}/QuantizeLinear").inputs[1].const_value.numpy())


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    folder = calibration(tmp_path_factory.mktemp("cal"), {"x": [1, 3, 8, 8]}, count=48)
    samples = np.load(folder / "x.npy")
    samples[0, 0, 0, 0, 0] = 40.0  # one outlier: minmax keeps it, the others clip it
    np.save(folder / "x.npy", samples)
    return folder


@pytest.mark.parametrize("method", ["minmax", "mse", "percentile", "entropy"])
def test_every_method_quantizes_close_to_float(cal, method):
    plan = f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{cal}" method {method}\n'
    prog = quantized(_model(), plan)
    assert prog.quantization[0].method == method
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    got, want = run(prog, {"x": x})[0], run(_model(), {"x": x})[0]
    tolerance = 0.3 if method == "entropy" else 0.1  # entropy clips the heavy-tailed Relu output hard
    assert np.abs(got - want).max() < tolerance * np.abs(want).max()


def test_minmax_keeps_the_outlier_and_the_other_methods_never_widen(cal):
    scales = {m: _scale(quantized(_model(), f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{cal}" method {m}\n'),
                        "x") for m in ("minmax", "mse", "percentile", "entropy")}
    assert scales["minmax"] == pytest.approx((40.0 - np.load(cal / "x.npy").min()) / 255, rel=1e-5)
    assert scales["mse"] <= scales["minmax"] and scales["percentile"] <= scales["minmax"]
    assert scales["entropy"] < scales["minmax"] / 2


def test_reader_streams_memory_mapped_samples(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6 * 4, dtype=np.float32).reshape(6, 4))
    data = CalibrationData(tmp_path, [ModelInput("x", (2, 4), np.dtype(np.float32))])
    assert isinstance(data.arrays["x"].views[0][0], np.memmap)
    samples = [s["x"] for s in data]
    assert len(samples) == 3 and samples[1].tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]  # batch 2 rows per sample
    assert len(CalibrationData(tmp_path, [ModelInput("x", (1, 4), np.dtype(np.float32))], limit=4)) == 4
