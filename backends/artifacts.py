"""Write a compiled program's output directory: sub-models, rankfile, comm.json, manifest.json.

The layout is `devices/<device>/stage<k>.onnx` plus the three top-level files; every file's
sha256 ends up in the manifest. Writing happens in a temp dir renamed into place at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from ..compiler.program import Program
from .comm_tables import comm_tables, rankfile_text
from .manifest import build_manifest, sha256_file
from .onnx import write_stage_models
from .output_dir import atomic_directory

Progress = Callable[[str], None]


def write_artifacts(
    program: Program,
    out: Path,
    *,
    model_info: dict,
    plan_info: dict | None,
    progress: Progress = lambda _msg: None,
    backends: Sequence[str] = ("onnx",),
) -> dict:
    """Write OUT; ONNX sub-models always, a TVM module per stage with "tvm", the C++/MPI program with "cpp"."""
    with atomic_directory(out) as tmp:
        progress(f"writing {len(program.stages)} ONNX sub-models")
        directories = {s.index: tmp / "devices" / s.device for s in program.stages}
        paths = write_stage_models(program, directories)
        stage_files = {i: p.relative_to(tmp).as_posix() for i, p in paths.items()}
        (tmp / "rankfile").write_text(rankfile_text(program))
        (tmp / "comm.json").write_text(json.dumps(comm_tables(program), indent=2) + "\n")
        manifest = build_manifest(program, stage_files, model_info=model_info, plan_info=plan_info)
        if "tvm" in backends:
            from .tvm import compile_output

            manifest["tvm"] = compile_output(program, tmp, progress)
        if "cpp" in backends:
            from .cpp_mpi import write_cpp, write_packages

            progress("writing the C++/MPI program (cpp/) and per-device packages (packages/)")
            write_cpp(tmp, manifest)
            write_packages(tmp, manifest)
        manifest["files"] = {
            p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
