"""A real exported model on VTA: the corpus's TorchScript MobileNetV3 (opset 17: depthwise convs, SE
blocks, HardSwish), quantized for one VTA device, compiles with `--backend vta`; its plain convs run on
VTA, the rest falls back with reasons, and `verify --engine vta` agrees with the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import edgec
from edgec.backends.manifest import read_manifest
from edgec.runtime.verify import verify

MODEL = Path(__file__).parents[2] / "corpus" / "models" / "mobilenetv3_ts.onnx"


def test_mobilenetv3_runs_its_plain_convs_on_vta(tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    np.save(cal / "input.npy", np.random.default_rng(0).standard_normal((8, 1, 3, 64, 64)).astype(np.float32))
    plan = f'input "input" [1, 3, 64, 64]\ndevice f {{ accel vta }}\nplace * on f.vta\nquantize f int8 calibrate "{cal}"\n'
    edgec.compile(MODEL, plan, tmp_path / "out", backends=["vta"])
    stage = read_manifest(tmp_path / "out" / "manifest.json").section("vta").stage(0)
    reasons = {f.reason for f in stage.fallbacks}
    assert len(stage.layers) >= 30, len(stage.layers)
    assert any("grouped convolution" in r for r in reasons) and "VTA has no HardSwish" in reasons
    report = verify(tmp_path / "out", engine="vta")
    assert report.ok and report.agreement[0].top1_agreement == 1.0
