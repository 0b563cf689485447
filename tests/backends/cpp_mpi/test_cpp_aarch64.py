"""The generated program's own code cross-compiles for an aarch64 board against the aarch64 TVM runtime.

Linking needs Open MPI for arm64 (installed on the board, or a multiarch sysroot), which this
machine does not have; compiling `main.cpp` to an AArch64 object checks everything edgec writes.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cpp_helpers import aarch64_runtime, tiny_output

from edgec.backends.cpp_mpi import write_cpp


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs g++-aarch64-linux-gnu (make setup)")
def test_main_cpp_compiles_for_aarch64(tmp_path):
    out = tiny_output(tmp_path)
    write_cpp(out)
    tvm = aarch64_runtime()
    mpi = subprocess.run(["mpicxx", "--showme:compile"], capture_output=True, text=True, check=True).stdout.split()
    obj = tmp_path / "main.o"
    subprocess.run(["aarch64-linux-gnu-g++", "-std=c++17", "-c", str(out / "cpp" / "main.cpp"), "-o", str(obj),
                    "-I", str(tvm / "include"), *mpi], check=True, capture_output=True)
    assert obj.read_bytes()[18] == 0xB7  # ELF e_machine: AArch64
