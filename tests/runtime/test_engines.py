"""The engine registry: one table from engine name to session, kernel and runner, and its errors.

Why: `verify`, `run`, the in-process loop and the MPI ranks all pick an engine by name; an
unknown one, or one whose backend never ran on the output, must be one clear message (which
engines exist; which `--backend` to compile with) before anything starts. Also checked: the
runtime modules import without side effects or cycles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgec.cli import app
from edgec.compiler.diagnostics import UsageError
from edgec.runtime import launcher
from edgec.runtime.engines import checked_engine, engine_names, get_engine, kernel_for
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.stage_kernel import OrtKernel
from edgec.runtime.verify import verify

runner = CliRunner()


def test_the_built_in_engines() -> None:
    assert engine_names() == ["onnxruntime", "tvm", "cpp", "vta"]
    assert {name: get_engine(name).backend for name in engine_names()} == {"onnxruntime": "onnx", "tvm": "tvm",
                                                                           "cpp": "cpp", "vta": "vta"}
    assert get_engine("onnxruntime").per_stage and get_engine("tvm").per_stage and not get_engine("cpp").per_stage


def test_unknown_engine_lists_the_engines(tiny_out) -> None:
    with pytest.raises(UsageError, match=r"unknown engine 'tvn' \(engines: onnxruntime, tvm, cpp, vta\); did you mean 'tvm'"):
        get_engine("tvn")
    with pytest.raises(UsageError, match="unknown engine 'ncnn'"):
        launcher.run(tiny_out, random_inputs(CompiledOutput.open(tiny_out).manifest), engine="ncnn")
    for command in (["verify", str(tiny_out), "--engine", "ncnn"], ["run", str(tiny_out), "--engine", "ncnn"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "unknown engine 'ncnn' (engines: onnxruntime, tvm, cpp, vta)" in result.output


@pytest.mark.parametrize("engine", ["tvm", "cpp"])
def test_an_engine_without_its_artifacts_names_the_backend(tiny_out, engine) -> None:
    compiled = CompiledOutput.open(tiny_out)
    with pytest.raises(UsageError, match=f"no artifacts of the {engine} backend") as caught:
        checked_engine(compiled, engine)
    assert caught.value.hint == f"compile it with --backend {engine}"
    with pytest.raises(UsageError, match=f"no artifacts of the {engine} backend"):
        verify(tiny_out, random_inputs(compiled.manifest), engine=engine)
    for command in ("verify", "run"):
        result = runner.invoke(app, [command, str(tiny_out), "--engine", engine])
        assert result.exit_code == 2 and f"--backend {engine}" in result.output, result.output


def test_sessions_and_kernels_come_from_the_engine(tiny_out) -> None:
    compiled = CompiledOutput.open(tiny_out)
    session = compiled.engine_session(0, "onnxruntime")
    assert isinstance(kernel_for(session), OrtKernel)
    with pytest.raises(UsageError, match="no engine runs a session of type object"):
        kernel_for(object())


def test_a_whole_program_engine_has_no_stage_sessions(tiny_out, tmp_path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(tiny_out, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["backends"] = ["onnx", "tvm", "cpp"]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="engine 'cpp' runs the whole program under mpirun"):
        CompiledOutput.open(copy).engine_session(0, "cpp")


def test_runtime_modules_import_without_side_effects() -> None:
    code = ("import os, sys\n"
            "import edgec.runtime.outputs\n"
            "assert 'edgec.runtime.tvm_stage' not in sys.modules, 'outputs imports tvm_stage'\n"
            "import edgec.runtime.tvm_stage, edgec.runtime.verify, edgec.runtime.engines\n"
            "assert 'TVM_NUM_THREADS' not in os.environ, 'TVM_NUM_THREADS set at import'\n"
            "assert 'tvm' not in sys.modules, 'TVM imported at import'\n")
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
