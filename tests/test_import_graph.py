"""Each command imports only what it needs: a fresh interpreter runs it and reports the modules it loaded.

Why a test: start-up time is most of what a user waits for in `edgec --help` or a small
compile, and one eager import (onnxruntime, TVM, sympy, …) at the top of a module undoes it
silently. Modules are checked, never seconds. A module `compiler/lazy_imports.py` deferred
(sympy) is in `sys.modules` as a lazy stub until used; only executed modules count here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tiny_cnn import build

CHILD = """
import json, sys
from edgec.cli import app
try:
    app(args=sys.argv[2:], prog_name="edgec")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted(n for n, m in sys.modules.items() if type(m).__name__ != "_LazyModule")
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": loaded}, f)
"""

NEVER = ("tvm", "tvm_ffi", "onnxruntime", "torch", "tensorflow", "mpi4py", "networkx", "sympy", "scipy", "graphviz",
         "matplotlib")
"""Not needed by any command below (sympy: onnx-ir imports it, edgec defers it)."""
MODEL_STACK = ("onnx", "onnx_ir", "onnxscript", "numpy", "ml_dtypes", "google.protobuf")


def loaded(tmp_path: Path, *args: str) -> set[str]:
    report = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", CHILD, str(report), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stdout + done.stderr
    return set(result["modules"])


def present(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(p for p in packages if p in modules or any(m.startswith(p + ".") for m in modules))


def test_help_needs_no_model_stack(tmp_path):
    modules = loaded(tmp_path, "--help")
    assert present(modules, NEVER + MODEL_STACK + ("lark", "pydantic", "edgec.api", "edgec.passes")) == []


@pytest.mark.parametrize("command", [["compile", "--help"], ["verify", "--help"], ["run", "--help"]])
def test_command_help_needs_no_model_stack(tmp_path, command):
    assert present(loaded(tmp_path, *command), NEVER + MODEL_STACK) == []


def test_import_autodice_needs_no_model_stack(tmp_path):
    (tmp_path / "mapping.json").write_text(json.dumps({"hostA_cpu0": ["conv1"], "hostB_cpu0": ["fc"]}))
    (tmp_path / "platform.txt").write_text("hostA\nhostB\n")
    modules = loaded(tmp_path, "import", "autodice", "mapping.json", "platform.txt", "-o", "plan.edge")
    assert (tmp_path / "plan.edge").is_file()
    assert present(modules, NEVER + MODEL_STACK) == []


def test_compile_leaves_out_runtimes_and_tvm(tmp_path):
    onnx.save(build(), tmp_path / "m.onnx")
    (tmp_path / "p.edge").write_text("device a { cores 1 }\ndevice b { cores 1 }\n"
                                     "place stem .. res_out on a\nplace * on b\n")
    modules = loaded(tmp_path, "compile", "m.onnx", "-p", "p.edge", "-o", "out")
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert present(modules, NEVER + ("rich.table", "edgec.runtime.verify", "edgec.backends.tvm",
                                     "edgec.backends.cpp_mpi")) == []


def test_passes_leaves_out_runtimes_and_tvm(tmp_path):
    assert present(loaded(tmp_path, "passes"), NEVER) == []
