"""Real exported models (tests/corpus) from four exporters — TorchScript, dynamo, tf2onnx (NHWC) and
Paddle — pruned by 20 % with calibration data and quantized after: each compiles into a smaller
model (fewer MACs, valid stage ONNX) that `verify` accepts by agreement with the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import edgec
from edgec.dsl.ast import quote
from edgec.runtime.verify import verify

MODELS = Path(__file__).parents[2] / "corpus" / "models"
CASES = [("mobilenetv3_ts", "input", [1, 3, 64, 64]), ("yolo_dynamo", "images", [1, 3, 64, 64]),
         ("keras_cnn_nhwc", "image", [1, 32, 32, 3]), ("paddle_cnn", "x", [1, 3, 32, 32])]


@pytest.mark.parametrize("name, input_name, shape", CASES)
def test_real_model_pruned_then_quantized_compiles_smaller_and_verifies(tmp_path, name, input_name, shape):
    cal = tmp_path / "cal"
    cal.mkdir()
    np.save(cal / f"{input_name}.npy", np.random.default_rng(0).random((8, *shape[1:]), dtype=np.float32))
    plan = (f"input {quote(input_name)} {shape}\ndevice a {{ cores 2 }}\nplace * on a\n"
            f'prune * channels 20% calibrate "{cal}"\nquantize a int8 calibrate "{cal}"\n')
    result = edgec.compile(MODELS / f"{name}.onnx", plan, tmp_path / "out")
    pruning = result.manifest.pruning
    assert pruning is not None and pruning.layers
    (total,) = pruning.totals()
    assert total.macs_after < total.macs_before
    for stage in (tmp_path / "out" / "devices").rglob("*.onnx"):
        onnx.checker.check_model(onnx.load(stage))
    report = verify(tmp_path / "out")
    assert report.quantized and report.ok
