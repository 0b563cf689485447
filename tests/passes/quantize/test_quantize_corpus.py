"""Real exported models (tests/corpus): a TorchScript MobileNetV3 (opset 17, depthwise, SE blocks)
and a TorchScript U-Net of opset 9 (upgraded to 13 by the pass), quantized whole and as a
two-stage pipeline; the pipeline's stages, run one after the other from the compiled output,
match the unsplit quantized model, and both stay close to the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgec
from edgec.dsl.ast import quote
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import run_stages
from qhelpers import calibration, quantized, run

MODELS = Path(__file__).parents[2] / "corpus" / "models"
CASES = [("mobilenetv3_ts", "input", [1, 3, 64, 64]), ("unet_opset9_ts", "image", [1, 3, 32, 32])]


@pytest.mark.parametrize("name, input_name, shape", CASES)
def test_real_model_quantized_whole_and_pipelined(tmp_path, name, input_name, shape):
    path = MODELS / f"{name}.onnx"
    cal = calibration(tmp_path / "cal", {input_name: shape}, count=8)
    head = f"input {quote(input_name)} {shape}\ndevice a {{}}\ndevice b {{}}\n"
    quantize = f'quantize a int8 calibrate "{cal}"\nquantize b int8 calibrate "{cal}"\n'
    whole = quantized(path, head + "place * on a\n" + quantize)
    assert whole.model.opset_imports[""] >= 13 and whole.quantization[0].nodes
    names = [n for n in edgec.load_program(path, edgec.load_plan(head + "place * on a\n")).node_names()]
    middle = names[len(names) // 2]
    result = edgec.compile(path, head + f"place {quote(names[0])} .. {quote(middle)} on a\nplace * on b\n" + quantize,
                           tmp_path / "out")
    assert len(result.program.stages) == 2 and len(result.program.quantization) == 2
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    staged = run_stages(CompiledOutput.open(tmp_path / "out"), {input_name: x})
    output = whole.graph.outputs[0].name
    reference = run(whole, {input_name: x})[0]
    float_out = run(edgec.load_program(path, edgec.load_plan(head + "place * on a\n")), {input_name: x})[0]
    scale = np.abs(float_out).max()
    assert np.abs(staged[output] - reference).max() <= 0.01 * scale
    assert np.abs(reference - float_out).max() <= 0.05 * scale
