"""Target selection from devices, target strings, and the errors for what TVM cannot do.

Why: a wrong target silently produces a module the device cannot load (wrong ISA) or a build
failure deep inside TVM; these tests pin the device → target mapping and check that
unsupported operators and targets stop the compile with a message naming the node and target.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import helper
from tvm_helpers import single_op_model

from edgec.backends.tvm import compile_stage, parse_target, select_target
from edgec.backends.tvm import targets as targets_module
from edgec.compiler.diagnostics import ModelError, UsageError
from edgec.compiler.platform import Device


def test_x86_device_gets_host_llvm() -> None:
    spec = select_target(Device("cam", arch="x86_64"))
    assert spec.target["kind"] == "llvm" and spec.target["mtriple"].startswith("x86_64")
    assert spec.target.get("mcpu") and spec.cross_compiler is None and spec.arch == "x86_64"


def test_aarch64_device_is_cross_compiled_with_neon() -> None:
    spec = select_target(Device("pi", arch="aarch64"))
    assert spec.target == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    assert spec.cross_compiler == "aarch64-linux-gnu-g++"


def test_gpu_stage_gets_cuda_with_device_cpu_host() -> None:
    spec = select_target(Device("jetson", arch="aarch64", gpu="cuda"), "gpu")
    assert spec.target["kind"] == "cuda" and spec.target["host"]["mtriple"] == "aarch64-linux-gnu"
    assert spec.arch == "aarch64"


def test_cli_target_strings_become_dicts() -> None:
    assert parse_target("llvm -mcpu=skylake -mattr=+avx2,+fma") == {
        "kind": "llvm", "mcpu": "skylake", "mattr": ["+avx2", "+fma"]}
    assert parse_target('{"kind": "cuda", "arch": "sm_87"}') == {"kind": "cuda", "arch": "sm_87"}
    spec = select_target(Device("orin", arch="aarch64", gpu="cuda", target="cuda -arch=sm_87"), "gpu")
    assert spec.target["arch"] == "sm_87" and spec.target["host"]["mtriple"] == "aarch64-linux-gnu"
    spec = select_target(Device("skl", target="llvm -mcpu=skylake"))
    assert spec.target == {"kind": "llvm", "mcpu": "skylake"}


@pytest.mark.parametrize("device, resource, message", [
    (Device("f", accel="vta"), "vta", "accelerator 'vta' has no TVM target"),
    (Device("g", gpu="opencl"), "gpu", "gpu 'opencl' has no TVM target"),
    (Device("h", target="bogus -x=1"), "cpu", "is not a valid TVM target"),
    (Device("i", target="-mcpu=skylake"), "cpu", "must start with a target kind"),
    (Device("j", target='{"kind": '), "cpu", "not valid JSON"),
    (Device("k", arch="sparc"), "cpu", "no TVM CPU target for architecture 'sparc'"),
])
def test_unsupported_targets_are_usage_errors(device: Device, resource: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        select_target(device, resource)


def test_missing_cross_compiler_names_the_package(monkeypatch) -> None:
    monkeypatch.setattr(targets_module.shutil, "which", lambda _name: None)
    with pytest.raises(UsageError) as err:
        select_target(Device("fpga", arch="armv7"))
    assert "arm-linux-gnueabihf-g++" in err.value.message and "g++-arm-linux-gnueabihf" in err.value.hint


def test_armv7_uses_its_cross_compiler_when_installed() -> None:
    if shutil.which("arm-linux-gnueabihf-g++") is None:
        with pytest.raises(UsageError, match="arm-linux-gnueabihf-g\\+\\+"):
            select_target(Device("fpga", arch="armv7"))
    else:
        assert select_target(Device("fpga", arch="armv7")).target["mtriple"].startswith("armv7")


def test_unsupported_operator_names_node_and_target(tmp_path) -> None:
    model = single_op_model(tmp_path / "det.onnx", [helper.make_node("Det", ["x"], ["y"], name="my_det")],
                            {"x": [3, 3]}, {}, ["y"])
    with pytest.raises(ModelError) as err:
        compile_stage(model, None, select_target(Device("cam")), tmp_path / "det.so")
    assert err.value.node == "my_det" and "Det" in err.value.message and "llvm" in err.value.message


def test_failing_converter_is_mapped_to_its_node(tmp_path) -> None:
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="XYZ", name="d2s")
    model = tmp_path / "d2s.onnx"
    single_op_model(model, [helper.make_node("Relu", ["x"], ["r"])], {"x": [1, 8, 2, 2]}, {}, ["r"])
    import onnx

    proto = onnx.load(str(model))
    proto.graph.node.append(node)
    proto.graph.output[0].name = "y"
    proto.graph.node[1].input[0] = "r"
    onnx.save(proto, model)
    with pytest.raises(ModelError) as err:
        compile_stage(model, None, select_target(Device("cam")), tmp_path / "d2s.so")
    assert err.value.node == "d2s" and "DepthToSpace" in err.value.message


def test_symbolic_input_shape_is_refused(tmp_path) -> None:
    model = single_op_model(tmp_path / "sym.onnx", [helper.make_node("Relu", ["x"], ["y"])], {"x": ["n", 4]}, {}, ["y"])
    with pytest.raises(ModelError, match="symbolic shape"):
        compile_stage(model, None, select_target(Device("cam")), tmp_path / "sym.so")
    info = compile_stage(model, {"x": [2, 4]}, select_target(Device("cam")), tmp_path / "sym.so")
    assert info["bytes"] > 0 and np.isfinite(info["compile_seconds"])
