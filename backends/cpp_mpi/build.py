"""Configure and build the generated program with CMake: `build(out)` → `OUT/build/edgec_pipeline`.

Why a separate step from compiling: building needs a C++ toolchain, MPI headers and the TVM
runtime, which a machine that only plans and compiles models may lack; and for a board the build
happens elsewhere (cross compiler, or on the board from its package).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

from ...compiler.diagnostics import UsageError
from ..output_dir import claim_build_directory

PROGRAM = "edgec_pipeline"


def program_path(out: str | Path) -> Path:
    return Path(out) / "build" / PROGRAM


def build(out: str | Path, *, build_dir: str | Path | None = None, cmake_args: list[str] | None = None,
          jobs: int = 2, progress: Callable[[str], None] = lambda _msg: None, force: bool = False) -> Path:
    """Configure and build OUT/cpp into `build_dir` (default OUT/build); returns the program's path.
    A failing step raises UsageError with the tail of the compiler's output. `build_dir` follows the
    output-directory rule (`output_dir.claim_build_directory`; `force` builds beside other files)."""
    out = Path(out)
    source = out / "cpp"
    if not (source / "CMakeLists.txt").is_file():
        raise UsageError(f"'{out}' has no cpp/CMakeLists.txt", hint="compile with --backend cpp first")
    if shutil.which("cmake") is None:
        raise UsageError("'cmake' not found", hint="apt-get install cmake g++ openmpi-bin libopenmpi-dev")
    build_dir = Path(build_dir) if build_dir else out / "build"
    claim_build_directory(build_dir, source, force=force, progress=progress)
    steps = [["cmake", "-S", str(source), "-B", str(build_dir), *(cmake_args or [])],
             ["cmake", "--build", str(build_dir), "-j", str(jobs)]]
    for step in steps:
        progress(" ".join(step))
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            text = (result.stdout + result.stderr).strip().splitlines()
            raise UsageError(f"'{' '.join(step[:2])}' failed:\n" + "\n".join(text[-25:]))
    return build_dir / PROGRAM
