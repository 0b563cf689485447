"""The TVM runtime for another CPU architecture (aarch64): where it is kept, and `edgec fetch-runtime`.

Why a cache: the aarch64 stage runner (`emulate.py`, to check aarch64 modules under qemu) and the
per-device packages of the C++ backend need `libtvm_runtime.so`/`libtvm_ffi.so` and the tvm-ffi
headers built for the board, for exactly the installed TVM version. The aarch64 wheels of that
version hold them; `fetch_runtime` downloads those wheels with pip (an explicit step: `edgec
fetch-runtime aarch64`, run by `make setup`) and keeps only the libraries and headers in
`~/.cache/edgec/tvm-<arch>/<version>/` (`EDGEC_CACHE` moves it). Nothing else downloads: a
missing runtime is an error that names the command.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from ...compiler.diagnostics import UsageError
from ..backend import Progress
from .targets import host_arch
from ..cache_dir import cache_root, run_pip

PLATFORMS = {"aarch64": "manylinux_2_28_aarch64"}
DISTRIBUTIONS = ("apache-tvm", "apache-tvm-ffi")
LIBRARIES = ("libtvm_runtime.so", "libtvm_ffi.so")


def _versions() -> dict[str, str]:
    try:
        return {d: importlib.metadata.version(d) for d in DISTRIBUTIONS}
    except importlib.metadata.PackageNotFoundError as exc:
        raise UsageError(f"the Python package {exc.name} is not installed", hint="pip install -e . (make setup)") from None


def _check_arch(arch: str) -> None:
    if arch == host_arch():
        raise UsageError(f"{arch} is this machine's architecture: its TVM runtime is the installed apache-tvm wheel")
    if arch not in PLATFORMS:
        raise UsageError(f"no TVM runtime wheels are known for '{arch}' (known: {', '.join(PLATFORMS)})")


def runtime_path(arch: str) -> Path:
    """Where the `arch` runtime of the installed TVM version lives (or would live) in the cache."""
    versions = _versions()
    return cache_root() / f"tvm-{arch}" / f"{versions['apache-tvm']}-ffi{versions['apache-tvm-ffi']}"


def _complete(root: Path) -> bool:
    return all((root / "lib" / lib).is_file() for lib in LIBRARIES) and (root / "include" / "tvm" / "ffi").is_dir()


def find_runtime(arch: str) -> Path | None:
    """The cached `arch` runtime of the installed TVM version, or None when it was not fetched."""
    _check_arch(arch)
    root = runtime_path(arch)
    return root if _complete(root) else None


def runtime_dir(arch: str = "aarch64") -> Path:
    """The cached `arch` runtime (lib/ and include/); a UsageError naming `edgec fetch-runtime` when missing."""
    root = find_runtime(arch)
    if root is None:
        raise UsageError(f"the {arch} TVM runtime for apache-tvm {_versions()['apache-tvm']} is not in "
                         f"{runtime_path(arch)}", hint=f"fetch it once with `edgec fetch-runtime {arch}` (make setup does)")
    return root


def fetch_runtime(arch: str = "aarch64", *, progress: Progress = lambda _msg: None, force: bool = False) -> Path:
    """Download the `arch` wheels of the installed TVM version with pip and keep their runtime
    libraries and headers in the cache; returns the cached folder (at once, when already there)."""
    _check_arch(arch)
    root = runtime_path(arch)
    if _complete(root) and not force:
        return root
    versions = _versions()
    wheels = cache_root() / f"tvm-{arch}" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    run_pip(["download", "--no-deps", "--only-binary=:all:", "--platform", PLATFORMS[arch], "--python-version",
             f"{sys.version_info.major}.{sys.version_info.minor}", "-d", str(wheels),
             *(f"{d}=={v}" for d, v in versions.items())], progress, what=f"download the {arch} TVM runtime",
            hint="check the network or the pip index, then run `edgec fetch-runtime` again")
    tmp = Path(tempfile.mkdtemp(dir=wheels))
    try:
        for wheel in sorted(wheels.glob("*.whl")):
            if any(wheel.name.startswith(f"{d.replace('-', '_')}-{v}-") for d, v in versions.items()):
                _extract(wheel, tmp)
        if not _complete(tmp):
            raise UsageError(f"the downloaded {arch} wheels hold no {' / '.join(LIBRARIES)} and tvm-ffi headers")
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(wheels, ignore_errors=True)
    return root


def _extract(wheel: Path, into: Path) -> None:
    """Keep the runtime libraries (any `.../lib/` folder of the wheel) and tvm-ffi's headers."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(tuple(f"/{lib}" for lib in LIBRARIES)) and "/lib/" in name:
                target = into / "lib" / Path(name).name
            elif name.startswith("tvm_ffi/include/") and not name.endswith("/"):
                target = into / "include" / name.removeprefix("tvm_ffi/include/")
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
