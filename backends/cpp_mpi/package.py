"""Write the generated sources (`OUT/cpp/`) and one deployment package per device (`OUT/packages/`).

Why per-device packages: a board needs only the program's source, the CMake file, the rankfile,
a run script and its own stage modules — not the other devices' weights. Every package unpacks to
the same folder, `edgec-<model>/`, laid out like OUT, so with each package unpacked at the same
path on its host, one `mpirun --rankfile` started there runs the whole pipeline.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from importlib import resources
from pathlib import Path

from ...compiler.diagnostics import UsageError
from .cmake import generate_cmake
from .codegen import generate_main, stage_module

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
    installed wheels for this machine's architecture, else the TVM backend's download cache."""
    from ..tvm.emulate import cache_root
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
    for root in sorted((cache_root() / f"tvm-{arch}").glob("*/"), reverse=True):
        if (root / "lib" / "libtvm_runtime.so").is_file() and (root / "include" / "tvm" / "ffi").is_dir():
            return root / "lib", root
    return None


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


def write_cpp(out: str | Path, manifest: dict | None = None) -> list[Path]:
    """Write OUT/cpp/{main.cpp, CMakeLists.txt, edgec_*.h}; returns the written paths."""
    out = Path(out)
    manifest = manifest or json.loads((out / "manifest.json").read_text())
    model = Path(manifest["model"].get("path", "model.onnx")).name
    cpp = out / "cpp"
    cpp.mkdir(exist_ok=True)
    texts = {"main.cpp": generate_main(out, manifest), "CMakeLists.txt": generate_cmake(model)}
    texts.update({name: _header(name) for name in HEADERS})
    for name, text in texts.items():
        (cpp / name).write_text(text)
    return [cpp / name for name in texts]


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def write_packages(out: str | Path, manifest: dict | None = None) -> list[Path]:
    """One OUT/packages/<device>.tar.gz per device; needs OUT/cpp and the stages' TVM modules.
    Each also carries the TVM runtime of the device's architecture (tvm/lib, tvm/include) when
    one is at hand, so the board needs only a C++ compiler, CMake and Open MPI."""
    out = Path(out)
    manifest = manifest or json.loads((out / "manifest.json").read_text())
    if not (out / "cpp" / "main.cpp").is_file():
        write_cpp(out, manifest)
    model = Path(manifest["model"].get("path", "model.onnx")).name
    run = RUN_SCRIPT.format(model=model, ranks=len(manifest["stages"]))
    (out / "packages").mkdir(exist_ok=True)
    written = []
    top = f"edgec-{Path(model).stem}"
    for device in dict.fromkeys(s["device"] for s in manifest["stages"]):
        modules = [stage_module(manifest, s["rank"]) for s in manifest["stages"] if s["device"] == device]
        for module in modules:
            if not (out / module).is_file():
                raise UsageError(f"stage module '{module}' is missing", hint="compile the stages with TVM first")
        path = out / "packages" / f"{device}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for file in sorted((out / "cpp").iterdir()):
                tar.add(file, f"{top}/cpp/{file.name}")
            tar.add(out / "rankfile", f"{top}/rankfile")
            for module in modules:
                tar.add(out / module, f"{top}/{module}")
            _add_text(tar, f"{top}/run.sh", run, 0o755)
            _add_runtime(tar, top, manifest["platform"]["devices"].get(device, {}).get("arch", "x86_64"))
        written.append(path)
    return written
