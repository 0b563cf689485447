"""`edgec compile` with quantize statements: a plan error exits 2 with the located message; a good
plan compiles and `edgec passes` lists the pass."""

from __future__ import annotations

import onnx
from typer.testing import CliRunner

from edgec.cli import app
from graphs import Net
from qhelpers import calibration

runner = CliRunner()


def _files(tmp_path, statement: str):
    net = Net({"x": [1, 2, 4, 4]})
    net.conv("c", "x", 2, 2)
    onnx.save(net.model(["c"]), tmp_path / "m.onnx")
    (tmp_path / "plan.edge").write_text(f"device a {{}}\nplace * on a\n{statement}\n")
    return [str(tmp_path / "m.onnx"), "-p", str(tmp_path / "plan.edge"), "-o", str(tmp_path / "out")]


def test_missing_calibration_exits_2_with_a_location(tmp_path):
    result = runner.invoke(app, ["compile", *_files(tmp_path, "quantize a int8")])
    assert result.exit_code == 2
    assert "plan.edge:3" in result.output and "needs calibration data" in result.output


def test_quantized_compile_and_passes_listing(tmp_path):
    cal = calibration(tmp_path / "cal", {"x": [1, 2, 4, 4]})
    result = runner.invoke(app, ["compile", *_files(tmp_path, f'quantize a int8 calibrate "{cal}" method mse')])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "manifest.json").exists()
    listing = runner.invoke(app, ["passes"])
    assert "quantize" in listing.output


def test_a_corrupt_calibration_file_exits_2_naming_it(tmp_path):
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "x.npy").write_text("not an array")
    result = runner.invoke(app, ["compile", *_files(tmp_path, f'quantize a int8 calibrate "{tmp_path / "cal"}"')])
    assert result.exit_code == 2, result.output
    assert "cannot read calibration data" in result.output and "x.npy" in result.output
    assert not (tmp_path / "out").exists()
