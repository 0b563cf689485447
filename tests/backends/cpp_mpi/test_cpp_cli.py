"""`--backend cpp` through the CLI: compile, `edgec build`, `verify --engine cpp`, `run --engine cpp`."""

from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

from edgec.cli import app
from tiny_cnn import build

runner = CliRunner()
PLAN = ("device a { cores 2 }\ndevice b { cores 2 }\nplace stem .. pool1 on a\n"
        "place res_conv1 .. res_out on b\nplace * on a\n")


@pytest.mark.slow
def test_cpp_backend_end_to_end(tmp_path):
    onnx.save(build(), tmp_path / "m.onnx")
    (tmp_path / "p.edge").write_text(PLAN)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"), "-o", str(out),
                                 "--backend", "cpp", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "cpp" / "main.cpp").is_file() and (out / "packages" / "a.tar.gz").is_file()
    assert runner.invoke(app, ["build", str(out), "-q"]).exit_code == 0
    result = runner.invoke(app, ["verify", str(out), "--engine", "cpp", "--json"])
    assert result.exit_code == 0 and '"ok": true' in result.output, result.output
    result = runner.invoke(app, ["run", str(out), "--engine", "cpp", "--frames", "5", "--json"])
    assert result.exit_code == 0 and '"frames": 5' in result.output, result.output
