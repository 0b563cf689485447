"""Where a rank is in its frame loop, kept in a tiny memory-mapped file in the run directory.

Why: when a run has to be stopped at its time limit, the launcher can read what each rank was
doing (computing, or waiting for a peer) and blame the rank that was not waiting on anyone. A
memory write per phase costs nothing next to a frame. This module imports no MPI, so the
launcher can use it without becoming an MPI process itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SETUP, WAIT_INPUTS, WAIT_SENDS, COMPUTE, DRAIN, FINISH, DONE = range(7)
PHASES = {SETUP: "starting up", WAIT_INPUTS: "waiting for its inputs of frame {frame}",
          WAIT_SENDS: "waiting for consumers to take its frames before {frame}", COMPUTE: "computing frame {frame}",
          DRAIN: "waiting for consumers to take its last frames", FINISH: "gathering results", DONE: "done"}
WAITING = (WAIT_INPUTS, WAIT_SENDS, DRAIN, DONE)


def progress_file(rundir: Path, rank: int) -> Path:
    return rundir / f"progress-rank{rank}"


def open_progress(rundir: Path, rank: int) -> np.ndarray:
    """The rank's (frame, phase) pair, mapped onto its file."""
    state = np.memmap(progress_file(rundir, rank), np.int64, "w+", shape=(2,))
    state[:] = (-1, SETUP)
    return state


def read_progress(rundir: Path, rank: int) -> tuple[int, int] | None:
    try:
        frame, phase = (int(v) for v in np.fromfile(progress_file(rundir, rank), np.int64, 2))
    except (OSError, ValueError):
        return None
    return frame, phase


def current_frame(rundir: Path, rank: int) -> int | None:
    """The frame the rank was working on, if it was inside one."""
    state = read_progress(rundir, rank)
    return state[0] if state is not None and state[1] in (WAIT_INPUTS, WAIT_SENDS, COMPUTE) else None


def describe(frame: int, phase: int) -> str:
    return PHASES.get(phase, "in an unknown state").format(frame=frame)
