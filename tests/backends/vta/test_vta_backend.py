"""The vta backend and engine end to end on a quantized ResNet-style plan (one device's VTA, one CPU):
the manifest names what runs on VTA and what falls back and why, `verify` agrees with the float
model, and every VTA layer's simulated output equals the integer reference bit for bit."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from typer.testing import CliRunner

import edgec
from edgec.cli import app
from edgec.backends.manifest import read_manifest
from edgec.backends.vta.int_layers import Extraction, IntConv, IntMaxPool, QTensor, extract, reference
from edgec.backends.vta.layer_programs import compile_layer
from edgec.backends.vta.section import VtaSection
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.verify import run_stages, verify
from vta_plans import INPUT, calibration, plan_text, resnet_model


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    d = tmp_path_factory.mktemp("vta")
    onnx.save(resnet_model(), d / "m.onnx")
    (d / "plan.edge").write_text(plan_text(calibration(d / "cal")))
    edgec.compile(str(d / "m.onnx"), str(d / "plan.edge"), d / "out", backends=["vta"])
    return d / "out"


def test_manifest_lists_vta_layers_and_fallbacks(output):
    m = read_manifest(output / "manifest.json")
    assert "vta" in m.backends
    section = m.section("vta")
    assert isinstance(section, VtaSection) and [s.rank for s in section.stages] == [0]
    stage = section.stage(0)
    assert {layer.name: layer.kind for layer in stage.layers} == {"c1": "conv", "c2": "conv", "c3": "conv",
                                                                  "add": "add", "pool": "pool", "fc1": "dense"}
    reasons = {f.node: f.reason for f in stage.fallbacks}
    assert reasons == {"flat": "VTA has no Flatten"}
    for layer in stage.layers:
        assert (output / layer.program).stat().st_size == 16 * layer.instructions
        assert (output / layer.dram).is_file() and layer.cycles > 0
        assert {"uop", "out"} <= set(layer.regions)
    conv = next(layer for layer in stage.layers if layer.name == "c2")
    assert conv.macs == 16 * 16 * 9 * 100 and 0 < conv.utilization <= 1


def test_vta_layers_equal_the_integer_reference(output):
    compiled = CompiledOutput.open(output)
    session = compiled.engine_session(0, "vta")
    x = np.random.default_rng(5).standard_normal(INPUT).astype(np.float32)
    env = session.trace({"x": x})
    layers = {layer.name: layer for layer in extract(ir.load(str(compiled.stage_model(0))).graph).layers}
    for record in session.stage.layers:
        layer = layers[record.name]
        want = reference(Extraction((layer,), (), ()), {n: env[n] for n in record.inputs})[record.output]
        assert env[record.output].dtype == np.int8
        np.testing.assert_array_equal(env[record.output], want, err_msg=record.name)
    assert np.abs(env["rg_quantized"].astype(int)).max() > 0  # the head is not all zero


def test_verify_with_the_vta_engine(output):
    report = verify(output, engine="vta")
    assert report.quantized and report.agreement
    assert all(a.top1_agreement >= 0.5 and a.finite for a in report.agreement)


def test_vta_engine_needs_the_vta_backend(tmp_path):
    onnx.save(resnet_model(), tmp_path / "m.onnx")
    (tmp_path / "plan.edge").write_text(plan_text(calibration(tmp_path / "cal")))
    edgec.compile(str(tmp_path / "m.onnx"), str(tmp_path / "plan.edge"), tmp_path / "out")
    with pytest.raises(edgec.UsageError, match="no artifacts of the vta backend"):
        verify(tmp_path / "out", engine="vta")


def test_cli_show_lists_vta_layers_and_fallbacks(output):
    result = CliRunner().invoke(app, ["show", str(output)], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "stage 0 on f.vta" in result.output and "VTA has no Flatten" in result.output
    rows = [line for line in result.output.splitlines() if " VTA     │" in line]
    assert len(rows) == 6, result.output
    shown = json.loads(CliRunner().invoke(app, ["show", str(output), "--json"]).stdout)
    assert {f["node"] for f in shown["vta"]["stages"][0]["fallbacks"]} == {"flat"}


def test_cli_verify_and_run_with_the_vta_engine(output, tmp_path):
    result = CliRunner().invoke(app, ["verify", str(output), "--engine", "vta"])
    assert result.exit_code == 0, result.output
    saved = tmp_path / "y.npy"
    result = CliRunner().invoke(app, ["run", str(output), "--engine", "vta", "--frames", "3", "--warmup", "1", "--json",
                                      "--save-outputs", str(saved)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (vta,) = report["vta"]
    stage = read_manifest(output / "manifest.json").section("vta").stage(0)
    assert vta["rank"] == 0 and vta["cycles_per_frame"] == stage.cycles * INPUT[0]
    assert vta["vta_ms"] == pytest.approx(1e3 * stage.cycles * INPUT[0] / 100e6) and vta["host_compute_ms"] > 0
    compiled = CompiledOutput.open(output)
    feeds = random_inputs(compiled.manifest, 0)
    want = run_stages(compiled, feeds, engine="vta")["fc2"]
    assert all(np.array_equal(frame, want) for frame in np.load(saved))


def test_layers_vta_cannot_run_are_refused_with_the_reason():
    x, y = QTensor("x", -4), QTensor("y", -3)
    w = np.ones((16, 16, 1, 1), np.int8)
    left_shift = IntConv("c", x, y, w, np.zeros(16, np.int32), np.full(16, -1))
    with pytest.raises(edgec.UsageError, match="0..15"):
        compile_layer(left_shift, {"x": (1, 16, 4, 4)})
    with pytest.raises(edgec.UsageError, match="strides"):
        compile_layer(IntMaxPool("p", x, x, (3, 3), (2, 1), (1, 1, 1, 1)), {"x": (1, 16, 6, 6)})
    compiled, kind = compile_layer(IntMaxPool("p", x, x, (3, 3), (2, 2), (1, 1, 1, 1)), {"x": (1, 16, 6, 6)})
    assert kind == "pool" and compiled.out_shape == (1, 16, 3, 3)
