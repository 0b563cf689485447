"""Run the C++/MPI program of a compiled output (`OUT/build/edgec_pipeline`) under mpirun.

Why beside the Python launcher: the C++ program is what a board runs without Python, and this
engine lets `edgec run/verify --engine cpp` drive it the same way — same input checks, same
mpirun options, same time limit and clean-up, same failure messages (a failing rank leaves
`error-rank<k>.json` just as a Python rank does) and the same report dict, which the program
itself writes as `report.json`. Inputs travel as `input<i>.npy` (stacks of frames, in the
manifest's input order) and outputs come back as `output<i>.npy`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..compiler.diagnostics import UsageError
from .engines import checked_engine
from .launcher import (
    DEFAULT_TIMEOUT, FORWARDED_ENV, RunResult, check_run_options, launch_for_report, make_rundir, mpirun_prefix,
    stack_feeds,
)
from .outputs import CompiledOutput


def program_for(compiled: CompiledOutput, program: str | Path | None, build: bool) -> Path:
    """The built program: `program`, or OUT/build/edgec_pipeline (built first when missing and `build`)."""
    from ..backends.cpp_mpi import build as build_program, program_path

    path = Path(program) if program else program_path(compiled.root)
    if path.is_file():
        return path.resolve()
    if program is None and build and (compiled.root / "cpp" / "CMakeLists.txt").is_file():
        return build_program(compiled.root).resolve()
    raise UsageError(f"the C++ program '{path}' does not exist",
                     hint=f"compile with --backend cpp, then `edgec build {compiled.root}`")


def cpp_command(compiled: CompiledOutput, program: Path, rundir: Path, *, frames: int, warmup: int,
                keep_outputs: bool, hosts: Path | None) -> list[str]:
    cmd = mpirun_prefix(compiled, hosts, (*FORWARDED_ENV, "TVM_NUM_THREADS"))
    cmd += [str(program), str(compiled.root.resolve()), str(rundir), "--frames", str(frames), "--warmup", str(warmup)]
    return cmd + (["--keep-outputs"] if keep_outputs else [])


def run(out: str | Path, feeds: dict[str, np.ndarray], *, frames: int = 1, warmup: int = 0,
        hosts: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT, keep_outputs: bool = False,
        workdir: str | Path | None = None, program: str | Path | None = None, build: bool = True) -> RunResult:
    """Like `launcher.run`, with the C++ program doing the work of every rank (OUT/build/edgec_pipeline,
    built first if missing, unless `program` names another build). This is the `cpp` engine's runner."""
    compiled = CompiledOutput.open(out)
    checked_engine(compiled, "cpp")
    check_run_options(frames, warmup, timeout)
    stacks = stack_feeds(compiled.manifest, feeds)
    exe = program_for(compiled, program, build)
    rundir = make_rundir(workdir, "edgec-cpp-")
    try:
        cmd = cpp_command(compiled, exe, rundir, frames=frames, warmup=warmup, keep_outputs=keep_outputs,
                          hosts=Path(hosts) if hosts else None)
        for i, spec in enumerate(compiled.manifest.model.inputs):
            np.save(rundir / f"input{i}.npy", stacks[spec.name])
        report = launch_for_report(compiled, cmd, rundir, timeout)
        outputs = {}
        if keep_outputs:
            for i, spec in enumerate(compiled.manifest.model.outputs):
                outputs[spec.name] = np.load(rundir / f"output{i}.npy", allow_pickle=False)
        return RunResult(report, outputs, cmd)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
