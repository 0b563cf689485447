"""Models with external data compile into self-contained outputs, and big stages get external data files."""

from __future__ import annotations

import onnx

import edgec
from edgec.backends.onnx import submodels
from edgec.runtime.outputs import random_inputs
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import run_stages, verify
from tiny_cnn import build

PLAN = "device a { cores 1 }\ndevice b { cores 1 }\nplace stem .. res_out on a\nplace * on b\n"


def test_external_data_model_compiles_and_verifies(tmp_path):
    model = build()
    onnx.external_data_helper.convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save(model, tmp_path / "m.onnx")
    result = edgec.compile(tmp_path / "m.onnx", PLAN, tmp_path / "out")
    assert not any(f.endswith(".data") for f in result.manifest["files"])
    assert verify(tmp_path / "out", random_inputs(result.manifest)).ok
    (tmp_path / "weights.bin").unlink()
    outputs = run_stages(CompiledOutput.open(tmp_path / "out"), random_inputs(result.manifest))
    assert outputs["probs"].shape == (1, 10)


def test_big_stages_get_external_data(tmp_path, monkeypatch):
    onnx.save(build(), tmp_path / "m.onnx")
    monkeypatch.setattr(submodels, "EXTERNAL_DATA_THRESHOLD", 0)
    result = edgec.compile(tmp_path / "m.onnx", PLAN, tmp_path / "out")
    assert "devices/a/stage0.onnx.data" in result.manifest["files"]
    assert verify(tmp_path / "out", random_inputs(result.manifest)).ok


def test_examples_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).parent.parent.parent / "examples"
    model = tmp_path / "tiny_cnn.onnx"
    subprocess.run([sys.executable, str(examples / "tiny_cnn.py"), str(model)], check=True, capture_output=True)
    out = subprocess.run([sys.executable, str(examples / "custom_pipeline.py"), str(model)], check=True,
                         capture_output=True, text=True).stdout
    assert "after count-crossings: modified=False" in out and "verify: ok" in out
