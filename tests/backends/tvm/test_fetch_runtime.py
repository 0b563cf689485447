"""`edgec fetch-runtime`: the aarch64 TVM runtime is downloaded only when asked, and its absence names the command.

Why: running aarch64 modules under qemu and packaging aarch64 devices need the runtime built
for the board; it used to be fetched by pip in the middle of a verify. pip is replaced here by a
fake that writes wheels of the same layout, so the extraction is tested without a network.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgec.backends.cpp_mpi.package import tvm_runtime
from edgec.backends.tvm import emulate
from edgec.backends.tvm.runtime_cache import fetch_runtime, find_runtime, runtime_dir
from edgec.backends.tvm.targets import host_arch
from edgec.cli import app
from edgec.compiler.diagnostics import UsageError

runner = CliRunner()


class FakePip:
    """Stands in for `pip download`: writes the two wheels' runtime files into the -d folder."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, command, **_kwargs):
        self.calls.append(command)
        if self.returncode == 0:
            folder = Path(command[command.index("-d") + 1])
            pins = dict(arg.split("==") for arg in command if "==" in arg)
            files = {"apache-tvm": {"tvm/lib/libtvm_runtime.so": b"\x7fELF tvm", "tvm/__init__.py": b""},
                     "apache-tvm-ffi": {"tvm_ffi/lib/libtvm_ffi.so": b"\x7fELF ffi",
                                        "tvm_ffi/include/tvm/ffi/c_api.h": b"// header",
                                        "tvm_ffi/include/dlpack/dlpack.h": b"// dlpack"}}
            for dist, members in files.items():
                wheel = folder / f"{dist.replace('-', '_')}-{pins[dist]}-cp311-cp311-manylinux_2_28_aarch64.whl"
                with zipfile.ZipFile(wheel, "w") as zf:
                    for name, data in members.items():
                        zf.writestr(name, data)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_missing_runtime_names_the_command(empty_cache) -> None:
    assert find_runtime("aarch64") is None and tvm_runtime("aarch64") is None
    with pytest.raises(UsageError, match="the aarch64 TVM runtime for apache-tvm .* is not in") as caught:
        runtime_dir("aarch64")
    assert "edgec fetch-runtime aarch64" in caught.value.hint
    assert not empty_cache.exists()


@pytest.mark.skipif(shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="needs qemu-user and g++-aarch64-linux-gnu (make setup)")
def test_emulation_does_not_download(empty_cache, monkeypatch) -> None:
    pip = FakePip()
    monkeypatch.setattr(subprocess, "run", pip)
    with pytest.raises(UsageError) as caught:
        emulate.runner("aarch64")
    assert "edgec fetch-runtime aarch64" in caught.value.hint and pip.calls == []


def test_fetch_keeps_the_libraries_and_headers(empty_cache, monkeypatch) -> None:
    pip = FakePip()
    monkeypatch.setattr(subprocess, "run", pip)
    root = fetch_runtime("aarch64")
    assert root == runtime_dir("aarch64") and root.is_relative_to(empty_cache)
    assert (root / "lib" / "libtvm_runtime.so").read_bytes() == b"\x7fELF tvm"
    assert (root / "lib" / "libtvm_ffi.so").is_file() and (root / "include" / "tvm" / "ffi" / "c_api.h").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["include", "lib"]
    assert "--platform" in pip.calls[0] and "manylinux_2_28_aarch64" in pip.calls[0]
    assert fetch_runtime("aarch64") == root and len(pip.calls) == 1
    assert tvm_runtime("aarch64") == (root / "lib", root)
    assert not (empty_cache / "tvm-aarch64" / "wheels").exists()


def test_a_failed_download_leaves_nothing(empty_cache, monkeypatch) -> None:
    monkeypatch.setattr(subprocess, "run", FakePip(1, "ERROR: No matching distribution found"))
    with pytest.raises(UsageError, match="could not download the aarch64 TVM runtime with pip: ERROR: No matching"):
        fetch_runtime("aarch64")
    assert find_runtime("aarch64") is None


def test_the_command(empty_cache, monkeypatch) -> None:
    monkeypatch.setattr(subprocess, "run", FakePip())
    result = runner.invoke(app, ["fetch-runtime", "aarch64", "-q"])
    assert result.exit_code == 0 and "aarch64 TVM runtime:" in result.output, result.output
    assert find_runtime("aarch64") is not None
    result = runner.invoke(app, ["fetch-runtime", host_arch()])
    assert result.exit_code == 2 and "this machine's architecture" in result.output
    result = runner.invoke(app, ["fetch-runtime", "sparc"])
    assert result.exit_code == 2 and "known: aarch64" in result.output
