"""The C++/MPI backend as a registered `Backend`: `cpp/` (main.cpp, CMake, headers) and `packages/`.

It reads only the manifest, including the `tvm` section for each rank's module, so it needs
the TVM backend (run first, even when only `cpp` was asked for).
"""

from __future__ import annotations

from pathlib import Path

from ...compiler.program import Program
from ..backend import Backend, Progress
from ..manifest import Manifest
from .package import build_packages, cpp_section, write_cpp
from .section import CppSection


class CppBackend(Backend):
    """The `cpp` backend: the generated C++/MPI program and its per-device packages, from the manifest
    alone (the `tvm` section gives each rank's module, hence `needs = ("tvm",)`)."""

    name = "cpp"
    summary = "one SPMD C++/MPI program (cpp/) and a package per device (packages/); needs tvm"
    needs = ("tvm",)
    section_type = CppSection

    def write(self, program: Program, out: Path, *, manifest: Manifest, progress: Progress) -> CppSection:
        progress("writing the C++/MPI program (cpp/) and per-device packages (packages/)")
        write_cpp(out, manifest)
        return cpp_section(out, build_packages(out, manifest))
