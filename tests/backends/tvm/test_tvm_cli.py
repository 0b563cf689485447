"""`--backend tvm` end to end: compile, verify and run (real mpirun) with the TVM modules."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from edgec.cli import app
from tiny_cnn import build

runner = CliRunner()
PLAN = "device a { cores 2 }\ndevice b { cores 2 }\nplace stem .. res_out on a\nplace * on b\n"


@pytest.fixture(scope="module")
def tvm_out(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tvm-cli")
    onnx.save(build(), directory / "m.onnx")
    (directory / "p.edge").write_text(PLAN)
    result = runner.invoke(app, ["compile", str(directory / "m.onnx"), "-p", str(directory / "p.edge"),
                                 "-o", str(directory / "out"), "--backend", "tvm"])
    assert result.exit_code == 0, result.output
    return directory / "out"


def test_manifest_lists_a_module_per_stage(tvm_out):
    manifest = json.loads((tvm_out / "manifest.json").read_text())
    modules = [entry["module"] for entry in manifest["tvm"]["stages"]]
    assert len(modules) == 2 and all((tvm_out / m).is_file() and m in manifest["files"] for m in modules)


def test_verify_and_run_with_the_tvm_engine(tvm_out):
    result = runner.invoke(app, ["verify", str(tvm_out), "--engine", "tvm", "--json"])
    assert result.exit_code == 0 and '"ok": true' in result.output, result.output
    result = runner.invoke(app, ["verify", str(tvm_out), "--engine", "tvm", "--mpi", "--json"])
    assert result.exit_code == 0 and '"ok": true' in result.output, result.output
    result = runner.invoke(app, ["run", str(tvm_out), "--engine", "tvm", "--frames", "5", "--json"])
    assert result.exit_code == 0 and '"frames": 5' in result.output, result.output


def test_engine_errors(tvm_out, tmp_path):
    assert "unknown engine 'ncnn'" in runner.invoke(app, ["verify", str(tvm_out), "--engine", "ncnn"]).output
    onnx.save(build(), tmp_path / "m.onnx")
    (tmp_path / "p.edge").write_text(PLAN)
    runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"), "-o", str(tmp_path / "o")])
    result = runner.invoke(app, ["verify", str(tmp_path / "o"), "--engine", "tvm"])
    assert result.exit_code == 2 and "--backend tvm" in result.output
