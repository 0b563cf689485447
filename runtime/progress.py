"""Where a rank is in its frame loop, kept in a tiny memory-mapped file, and how the launcher judges it.

Why: a run must end with the rank to blame, never a hang, and a slow start is not a hang. Each
rank keeps its (frame, phase) in a two-integer file in the run directory (a memory write per
phase costs nothing next to a frame) and says READY once its stage is loaded. The launcher
polls those files with a `RunWatch`, which applies the run's limits:

- start-up (`--startup-timeout`): every rank must be ready within this time; start-up is
  process launch, imports and loading the stage, which on a busy machine can take long;
- stall (`--stall-timeout`): once all are ready, some rank must finish a frame at least this
  often; when none does, the rank holding the oldest frame is blamed;
- overall (`--timeout`, off by default): the whole run, start-up included;
- connect (the stall limit, applied during start-up): once every rank is inside the first
  collective (CONNECT, where MPI wires the ranks up), it must finish within the stall limit.
  All ranks being there means nothing is left to load, so only a broken network or MPI can keep
  them; this catches such a hang in a minute instead of at the start-up limit.

This module imports no MPI, so the launcher can use it without becoming an MPI process itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

SETUP, WAIT_INPUTS, WAIT_SENDS, COMPUTE, DRAIN, FINISH, DONE, READY, CONNECT = range(9)
PHASES = {SETUP: "starting up", CONNECT: "in its first collective, connecting to the other ranks", READY: "ready, waiting for the other ranks to start",
          WAIT_INPUTS: "waiting for its inputs of frame {frame}",
          WAIT_SENDS: "waiting for consumers to take its frames before {frame}", COMPUTE: "computing frame {frame}",
          DRAIN: "waiting for consumers to take its last frames", FINISH: "gathering results", DONE: "done"}
WAITING = (WAIT_INPUTS, WAIT_SENDS, DRAIN, DONE, READY)
IN_FRAME = (WAIT_INPUTS, WAIT_SENDS, COMPUTE)
AFTER_LOOP = (DRAIN, FINISH, DONE)

DEFAULT_STARTUP_TIMEOUT = 600.0
DEFAULT_STALL_TIMEOUT = 60.0

State = tuple[int, int]


def progress_file(rundir: Path, rank: int) -> Path:
    return rundir / f"progress-rank{rank}"


def open_progress(rundir: Path, rank: int) -> np.ndarray:
    """The rank's (frame, phase) pair, mapped onto its file."""
    state = np.memmap(progress_file(rundir, rank), np.int64, "w+", shape=(2,))
    state[:] = (-1, SETUP)
    return state


def read_progress(rundir: Path, rank: int) -> State | None:
    try:
        frame, phase = (int(v) for v in np.fromfile(progress_file(rundir, rank), np.int64, 2))
    except (OSError, ValueError):
        return None
    return frame, phase


def read_all(rundir: Path, ranks: int) -> list[State | None]:
    return [read_progress(rundir, rank) for rank in range(ranks)]


def current_frame(rundir: Path, rank: int) -> int | None:
    """The frame the rank was working on, if it was inside one."""
    state = read_progress(rundir, rank)
    return state[0] if state is not None and state[1] in IN_FRAME else None


def describe(frame: int, phase: int) -> str:
    return PHASES.get(phase, "in an unknown state").format(frame=frame)


def is_ready(state: State | None) -> bool:
    return state is not None and state[1] not in (SETUP, CONNECT)


def frames_done(state: State | None) -> tuple[int, int]:
    """How far a rank got: frames it finished, then its step after the loop (what a stall compares)."""
    if state is None or state[1] in (SETUP, CONNECT, READY):
        return 0, 0
    frame, phase = state
    if phase in AFTER_LOOP:
        return frame + 1, AFTER_LOOP.index(phase) + 1
    return max(frame, 0), 0


def held_frame(state: State | None) -> int | None:
    """The oldest frame a rank holds: the one it computes, or the oldest it waits to hand on (it keeps
    two frames in flight). A rank waiting for its inputs does not hold the frame it waits for."""
    if state is None:
        return None
    frame, phase = state
    return {COMPUTE: frame, WAIT_SENDS: max(frame - 2, 0), DRAIN: max(frame - 1, 0)}.get(phase)


def oldest_holder(states: Sequence[State | None]) -> int | None:
    """The rank to blame for a stall: the computing rank on the oldest frame, else (every rank waiting
    on another) the rank holding the oldest frame."""
    busy = [(s[0], r) for r, s in enumerate(states) if s is not None and s[1] == COMPUTE]
    if busy:
        return min(busy)[1]
    holding = [(f, r) for r, s in enumerate(states) if (f := held_frame(s)) is not None]
    return min(holding)[1] if holding else None


@dataclass(frozen=True)
class Limits:
    """The run's time limits in seconds; None turns one off."""

    overall: float | None = None
    startup: float | None = DEFAULT_STARTUP_TIMEOUT
    stall: float | None = DEFAULT_STALL_TIMEOUT


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped: which limit ran out, and what every rank was doing then."""

    reason: Literal["timeout", "startup", "stall", "connect"]
    limit: float
    states: tuple[State | None, ...]


class RunWatch:
    """Applies `Limits` to what the ranks report; `observe` is given the time and the ranks' states
    (the launcher polls; a test can drive it with any clock) and returns a `Stop` once a limit is hit."""

    def __init__(self, limits: Limits, start: float) -> None:
        self.limits = limits
        self.start = start
        self.ready_at: float | None = None
        self.last_progress: float | None = None
        self.seen: tuple[tuple[int, int], ...] | None = None
        self.connecting_since: float | None = None

    def observe(self, now: float, states: Sequence[State | None]) -> Stop | None:
        states = tuple(states)
        limits = self.limits
        if limits.overall is not None and now - self.start > limits.overall:
            return Stop("timeout", limits.overall, states)
        if self.ready_at is None:
            if states and all(is_ready(s) for s in states):
                self.ready_at = self.last_progress = now
                self.seen = tuple(frames_done(s) for s in states)
            elif limits.startup is not None and now - self.start > limits.startup:
                return Stop("startup", limits.startup, states)
            elif states and all(s is not None and s[1] == CONNECT for s in states):
                self.connecting_since = now if self.connecting_since is None else self.connecting_since
                if limits.stall is not None and now - self.connecting_since > limits.stall:
                    return Stop("connect", limits.stall, states)
            else:
                self.connecting_since = None
            return None
        done = tuple(frames_done(s) for s in states)
        if done != self.seen:
            self.seen, self.last_progress = done, now
            return None
        finished = all(s is not None and s[1] == DONE for s in states)
        assert self.last_progress is not None
        if limits.stall is not None and not finished and now - self.last_progress > limits.stall:
            return Stop("stall", limits.stall, states)
        return None
