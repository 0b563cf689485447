"""Run a stage module built for another CPU (aarch64) on this machine, under qemu-user.

Why: a cross-compiled module cannot be loaded by this machine's TVM, yet `verify` and the
tests should check that it computes the right thing. `runner.cc` (a 100-line TVM runtime
client) is cross-compiled against the aarch64 `libtvm_runtime.so`/`libtvm_ffi.so` that
`edgec fetch-runtime aarch64` put in the cache (`runtime_cache.py`); nothing is downloaded
here. Tensors travel through a temp directory as raw bytes (see runner.cc for the format).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...compiler.diagnostics import UsageError
from .runtime_cache import runtime_dir

RUNNER_SOURCE = Path(__file__).with_name("runner.cc")
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x28: "armv7", 0xF3: "riscv64"}
_QEMU = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "aarch64-linux-gnu-g++")}
_DLPACK_CODES = {"f": 2, "i": 0, "u": 1, "b": 6}


def elf_arch(path: str | Path) -> str | None:
    """The CPU architecture an ELF shared library was built for (None if not ELF)."""
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        return None
    return _ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), f"elf-machine-{header[18]}")


def _tools(arch: str) -> tuple[str, str, str]:
    if arch not in _QEMU:
        raise UsageError(f"cannot emulate {arch} modules here (supported: {', '.join(_QEMU)})")
    qemu, sysroot, compiler = _QEMU[arch]
    for tool, package in ((qemu, "qemu-user"), (compiler, f"g++-{arch}-linux-gnu")):
        if shutil.which(tool) is None:
            raise UsageError(f"running {arch} modules needs '{tool}', which is not installed", hint=f"apt-get install {package}")
    return qemu, sysroot, compiler


def runner(arch: str = "aarch64") -> Path:
    """The stage runner cross-compiled for `arch` (rebuilt when runner.cc changes)."""
    _, _, compiler = _tools(arch)
    root = runtime_dir(arch)
    digest = hashlib.sha256(RUNNER_SOURCE.read_bytes()).hexdigest()[:12]
    path = root / f"runner-{digest}"
    if path.is_file():
        return path
    command = [compiler, "-std=c++17", "-O2", f"-I{root / 'include'}", str(RUNNER_SOURCE), "-o", f"{path}.part",
               f"-L{root / 'lib'}", "-ltvm_runtime", "-ltvm_ffi", f"-Wl,-rpath-link,{root / 'lib'}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"building the {arch} stage runner failed: {done.stderr.strip()[-500:]}")
    Path(f"{path}.part").rename(path)
    return path


def run_module(module: str | Path, inputs: list[np.ndarray], *, timeout: float = 600) -> list[np.ndarray]:
    """Run `main` of a foreign-architecture module once on `inputs` (positional); its outputs."""
    arch = elf_arch(module)
    qemu, sysroot, _ = _tools(arch or "?")
    program = runner(arch)
    root = program.parent
    with tempfile.TemporaryDirectory(prefix="edgec-qemu-") as tmp:
        lines = []
        for i, array in enumerate(inputs):
            array = np.ascontiguousarray(array)
            code = _DLPACK_CODES[array.dtype.kind]
            bits = 8 if array.dtype == np.bool_ else array.dtype.itemsize * 8
            array.tofile(Path(tmp) / f"in{i}.bin")
            lines.append(" ".join(map(str, [code, bits, 1, array.ndim, *array.shape, f"in{i}.bin"])))
        (Path(tmp) / "inputs.txt").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, LD_LIBRARY_PATH=str(root / "lib"))
        done = subprocess.run([qemu, "-L", sysroot, str(program), str(Path(module).resolve()), tmp],
                              env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise UsageError(f"{Path(module).name} failed under {qemu}: {done.stderr.strip()[-500:]}")
        return [_read(Path(tmp), line) for line in (Path(tmp) / "outputs.txt").read_text().splitlines() if line]


def _read(directory: Path, line: str) -> np.ndarray:
    code, bits, _, ndim, *rest = line.split()
    shape = [int(d) for d in rest[: int(ndim)]]
    kind = {v: k for k, v in _DLPACK_CODES.items()}[int(code)]
    dtype = np.dtype(bool) if kind == "b" else np.dtype(f"{kind}{int(bits) // 8}")
    return np.fromfile(directory / rest[-1], dtype=dtype).reshape(shape)
