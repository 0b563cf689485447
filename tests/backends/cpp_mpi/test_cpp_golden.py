"""Golden tests: the generated main.cpp and CMakeLists.txt of the example CNN (4 stages, 3 devices).

Regenerate after an intended change with
`EDGEC_UPDATE_GOLDEN=1 pytest tests/backends/cpp_mpi/test_cpp_golden.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cpp_helpers import tiny_output

from edgec.backends.cpp_mpi import generate_cmake, generate_main

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "cpp"


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("EDGEC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with EDGEC_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory) -> Path:
    return tiny_output(tmp_path_factory.mktemp("cpp-golden"))


def test_main_cpp(tiny_out) -> None:
    check("tiny_cnn.main.cpp", generate_main(tiny_out))


def test_cmake(tiny_out) -> None:
    check("tiny_cnn.CMakeLists.txt", generate_cmake("tiny_cnn.onnx"))


def test_main_cpp_comes_from_the_manifest_alone(tiny_out, tmp_path, monkeypatch) -> None:
    """With every sub-model gone and ONNX loading broken, the same main.cpp is generated."""
    import onnx
    import onnx_ir

    copy = tmp_path / "out"
    shutil.copytree(tiny_out, copy)
    for model in copy.rglob("*.onnx"):
        model.unlink()

    def refuse(*_args, **_kwargs):
        raise AssertionError("the C++ backend opened an ONNX file")

    for module, name in ((onnx, "load"), (onnx, "load_model"), (onnx_ir, "load")):
        monkeypatch.setattr(module, name, refuse)
    check("tiny_cnn.main.cpp", generate_main(copy))


def test_generated_code_is_deterministic(tiny_out) -> None:
    assert generate_main(tiny_out) == generate_main(tiny_out)


def test_identifiers_from_onnx_names() -> None:
    from edgec.backends.cpp_mpi.codegen import _identifier

    taken: set[str] = set()
    names = ["/layer1/Conv_output_0", "layer1/Conv:output_0", "0input", "int", "x"]
    assert [_identifier(n, taken) for n in names] == ["layer1_Conv_output_0", "layer1_Conv_output_0_2",
                                                        "t_0input", "int_", "x"]
