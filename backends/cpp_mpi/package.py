"""Write the generated sources (`OUT/cpp/`) and one deployment package per device (`OUT/packages/`).

Why per-device packages: a board needs only the program's source, the CMake file, the rankfile,
a run script and its own stage modules — not the other devices' weights. Every package unpacks to
the same folder, `edgec-<model>/`, laid out like OUT, so with each package unpacked at the same
path on its host, one `mpirun --rankfile` started there runs the whole pipeline.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from importlib import resources
from pathlib import Path

from ...compiler.diagnostics import UsageError
from ..manifest import Manifest, read_manifest
from .build import PROGRAM
from .cmake import generate_cmake
from .codegen import generate_main, model_name
from .replica_tables import rank_rows
from .section import CppPackage, CppSection

HEADERS = ("edgec_support.h", "edgec_stage.h", "edgec_report.h")

RUN_SCRIPT = """\
#!/bin/sh
# run.sh: build (once) and run the edgec pipeline of {model} from this folder.
#   ./run.sh build [cmake args...]       configure + build into build/
#   ./run.sh HOSTFILE RUNDIR [--frames N] [--warmup W] [--keep-outputs]
# Unpack every device's package at the same path on its host first; RUNDIR must be shared and
# hold input<i>.npy. Open MPI must be installed on every host (apt-get install openmpi-bin).
set -e
cd "$(dirname "$0")"
if [ "$1" = build ]; then
  shift
  if [ -d tvm ]; then set -- -DTVM_RUNTIME_DIR="$PWD/tvm/lib" -DTVM_FFI_DIR="$PWD/tvm" "$@"; fi
  cmake -S cpp -B build -DCMAKE_BUILD_TYPE=Release "$@"
  exec cmake --build build -j
fi
hostfile=$1; rundir=$2; shift 2
exec mpirun -np {ranks} --hostfile "$hostfile" --rankfile rankfile -x TVM_NUM_THREADS \\
  "$PWD/build/edgec_pipeline" "$PWD" "$rundir" "$@"
"""


def tvm_runtime(arch: str) -> tuple[Path, Path] | None:
    """(folder of libtvm_runtime.so + libtvm_ffi.so, folder of the tvm-ffi headers) for `arch`: the
    installed wheels for this machine's architecture, else the one `edgec fetch-runtime` cached."""
    from ..tvm.runtime_cache import find_runtime
    from ..tvm.targets import host_arch

    if arch == host_arch():
        located = {}
        for package in ("tvm", "tvm_ffi"):
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                return None
            located[package] = Path(spec.submodule_search_locations[0])
        ffi = located["tvm_ffi"]
        lib = located["tvm"] / "lib"
        if (lib / "libtvm_runtime.so").is_file() and (ffi / "lib" / "libtvm_ffi.so").is_file():
            return lib, ffi
        return None
    try:
        root = find_runtime(arch)
    except UsageError:
        return None
    return (root / "lib", root) if root is not None else None


def _add_runtime(tar: tarfile.TarFile, top: str, arch: str) -> bool:
    found = tvm_runtime(arch)
    if found is None:
        return False
    lib, ffi = found
    tar.add(lib / "libtvm_runtime.so", f"{top}/tvm/lib/libtvm_runtime.so")
    tar.add(ffi / "lib" / "libtvm_ffi.so" if (ffi / "lib" / "libtvm_ffi.so").is_file() else lib / "libtvm_ffi.so",
            f"{top}/tvm/lib/libtvm_ffi.so")
    tar.add(ffi / "include", f"{top}/tvm/include")
    return True


def _header(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def _record(out: Path, manifest: Manifest, packages: tuple[CppPackage, ...] | None = None) -> None:
    """Add (or refresh) the `cpp` section of an output written earlier, for write_cpp/write_packages
    called on their own: what is in OUT/cpp, and the packages (kept from before unless given)."""
    from ..artifacts import add_section

    previous = manifest.section("cpp")
    if packages is None:
        kept = previous.packages if isinstance(previous, CppSection) else ()
        packages = tuple(p for p in kept if (out / p.path).is_file())
    add_section(out, "cpp", cpp_section(out, packages))


def cpp_section(out: Path, packages: tuple[CppPackage, ...]) -> CppSection:
    sources = tuple(p.relative_to(out).as_posix() for p in sorted((out / "cpp").iterdir()) if p.is_file())
    return CppSection(sources=sources, program=f"build/{PROGRAM}", packages=packages)


def write_cpp(out: str | Path, manifest: Manifest | None = None) -> list[Path]:
    """Write OUT/cpp/{main.cpp, CMakeLists.txt, edgec_*.h}; returns the written paths. Without
    `manifest` (an output written earlier) its manifest.json gains the `cpp` section."""
    out = Path(out)
    standalone = manifest is None
    manifest = manifest or read_manifest(out)
    cpp = out / "cpp"
    cpp.mkdir(exist_ok=True)
    texts = {"main.cpp": generate_main(out, manifest), "CMakeLists.txt": generate_cmake(model_name(manifest))}
    texts.update({name: _header(name) for name in HEADERS})
    for name, text in texts.items():
        (cpp / name).write_text(text)
    if standalone:
        _record(out, manifest)
    return [cpp / name for name in texts]


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def build_packages(out: Path, manifest: Manifest) -> tuple[CppPackage, ...]:
    """One OUT/packages/<device>.tar.gz per device, with the modules of every rank on it (a further replica's
    own included); needs OUT/cpp and those TVM modules.
    Each also carries the TVM runtime of the device's architecture (tvm/lib, tvm/include) when
    one is at hand, so the board needs only a C++ compiler, CMake and Open MPI."""
    if not (out / "cpp" / "main.cpp").is_file():
        write_cpp(out, manifest)
    model = model_name(manifest)
    ranks = rank_rows(manifest)
    run = RUN_SCRIPT.format(model=model, ranks=len(ranks))
    (out / "packages").mkdir(exist_ok=True)
    packages = []
    top = f"edgec-{Path(model).stem}"
    for device in dict.fromkeys(r.device for r in ranks):
        modules = list(dict.fromkeys(r.module for r in ranks if r.device == device))
        for module in modules:
            if not (out / module).is_file():
                raise UsageError(f"stage module '{module}' is missing", hint="compile the stages with TVM first")
        path = out / "packages" / f"{device}.tar.gz"
        arch = manifest.device(device).arch
        with tarfile.open(path, "w:gz") as tar:
            for file in sorted((out / "cpp").iterdir()):
                tar.add(file, f"{top}/cpp/{file.name}")
            tar.add(out / "rankfile", f"{top}/rankfile")
            for module in modules:
                tar.add(out / module, f"{top}/{module}")
            _add_text(tar, f"{top}/run.sh", run, 0o755)
            bundled = _add_runtime(tar, top, arch)
        packages.append(CppPackage(device, path.relative_to(out).as_posix(), arch, bundled))
    return tuple(packages)


def write_packages(out: str | Path, manifest: Manifest | None = None) -> list[Path]:
    """Write the per-device packages (`build_packages`); returns their paths. Without `manifest`
    (an output written earlier) its manifest.json's `cpp` section lists them."""
    out = Path(out)
    standalone = manifest is None
    manifest = manifest or read_manifest(out)
    packages = build_packages(out, manifest)
    if standalone:
        _record(out, manifest, packages)
    return [out / p.path for p in packages]
