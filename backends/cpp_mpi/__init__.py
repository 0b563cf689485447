"""C++/MPI backend: a Python-free SPMD program (TVM stage modules + Open MPI) and per-device packages."""

from __future__ import annotations

from .build import build, program_path
from .codegen import generate_main
from .cmake import generate_cmake
from .package import write_cpp, write_packages
from .section import CppPackage, CppSection

__all__ = ["CppPackage", "CppSection", "build", "generate_cmake", "generate_main", "program_path", "write_cpp",
           "write_packages"]
