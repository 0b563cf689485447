"""Stages on an aarch64 CPU and on a CUDA GPU: right ELF machine, right results, CUDA kernels.

Why: a cross-compiled module that links but targets the wrong ISA, or computes something
else, would only show up on the device. The aarch64 stage is run here under qemu-user by the
cross-compiled runner (TVM runtime from the aarch64 wheels, which `edgec fetch-runtime
aarch64` keeps in ~/.cache/edgec; the fixture fetches it if `make setup` did not) and compared with onnxruntime; the CUDA stage cannot run without a GPU, so the
test checks that real CUDA kernels were generated and embedded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tvm_helpers import TOLERANCE, aarch64_runtime, rel_err

import edgec
from tiny_cnn import build
from edgec.backends.tvm import compile_directory
from edgec.backends.tvm.emulate import elf_arch
from edgec.compiler.diagnostics import UsageError
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.tvm_stage import TvmSession

PLAN = """
device cam { arch x86_64  cores 2 }
device hub { arch aarch64 cores 4 gpu cuda }
place stem .. pool1 on cam.cpu threads 2
place res_conv1 .. branch_b2 on hub.cpu threads 2
place [branch_c, branch_c_relu] on cam.cpu
place * on hub.gpu
"""
TOOLS = {"qemu-aarch64": "qemu-user", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu"}


@pytest.fixture(scope="module")
def cross_tools() -> None:
    """The Makefile installs these; a bare root machine gets them from apt here."""
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"install {', '.join(TOOLS[t] for t in missing)} (see the Makefile)"


@pytest.fixture(scope="module")
def output(cross_tools, tmp_path_factory) -> Path:
    aarch64_runtime()
    directory = tmp_path_factory.mktemp("cross")
    out = directory / "out"
    edgec.compile(build(), PLAN, out)
    compile_directory(out)
    return out


@pytest.mark.slow
def test_modules_are_built_for_each_device_cpu(output: Path) -> None:
    compiled = CompiledOutput.open(output)
    arches = {e["rank"]: (e["device"], e["resource"], elf_arch(output / e["module"]))
              for e in compiled.manifest["tvm"]["stages"]}
    assert {a for d, _, a in arches.values() if d == "cam"} == {"x86_64"}
    assert {a for d, _, a in arches.values() if d == "hub"} == {"aarch64"}
    with open(output / compiled.manifest["tvm"]["stages"][1]["module"], "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 0xB7  # EM_AARCH64


@pytest.mark.slow
def test_aarch64_stage_runs_under_qemu_and_matches_onnxruntime(output: Path) -> None:
    compiled = CompiledOutput.open(output)
    feeds = random_inputs(compiled.manifest, seed=3)
    tensors = dict(feeds)
    emulated = 0
    for stage in compiled.stages:
        ort_session = compiled.session(stage["rank"])
        names = [i.name for i in ort_session.get_inputs()]
        expected = ort_session.run(None, {n: tensors[n] for n in names})
        if stage["resource"] == "cpu":
            session = TvmSession.for_stage(compiled, stage["rank"])
            emulated += session.emulated
            for want, got in zip(expected, session.run(None, {n: tensors[n] for n in names})):
                assert got.shape == want.shape and rel_err(got, want) <= TOLERANCE
        tensors.update(zip((o.name for o in ort_session.get_outputs()), expected))
    assert emulated == 1


@pytest.mark.slow
def test_gpu_stage_holds_cuda_kernels(output: Path) -> None:
    compiled = CompiledOutput.open(output)
    (entry,) = [e for e in compiled.manifest["tvm"]["stages"] if e["resource"] == "gpu"]
    assert entry["target"]["kind"] == "cuda" and entry["target"]["host"]["mtriple"] == "aarch64-linux-gnu"
    assert entry["device_kernels"] > 0 and entry["device_code"] == ["cuda-source"]
    assert b'extern "C" __global__' in (output / entry["module"]).read_bytes()
    with pytest.raises(UsageError, match="CUDA"):
        TvmSession.for_stage(compiled, entry["rank"])
