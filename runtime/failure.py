"""How a distributed run fails: one error type, and the traces a failing rank leaves behind.

A run must end with one message naming the rank, its stage and the cause, never a hang. A
rank that catches an exception leaves an `error-rank<k>.json` in the shared run directory
(and the same JSON on one stderr line, for hosts that do not share that directory) before it
aborts the job; a rank that dies without a word is named by parsing what `mpirun` prints; a run
stopped at a time limit (`progress.Stop`) is described by what each rank last reported, the
rank to blame first.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..backends.manifest import StageEntry
from ..compiler.diagnostics import EdgecError
from .progress import WAITING, State, Stop, describe, held_frame, is_ready, oldest_holder

STDERR_MARK = "EDGEC_RANK_ERROR "


class RuntimeFailure(EdgecError):
    """A distributed run that did not finish: a rank crashed, raised, or the run timed out."""


@dataclass(frozen=True)
class RankError:
    """What a failing rank reported (its error file or stderr line): the cause, the frame it was at, the
    traceback as `detail`, and the wall-clock `time`, which orders the errors of one run."""

    rank: int
    cause: str
    frame: int | None = None
    detail: str = ""
    time: float = 0.0

    def describe(self, stages: Sequence[StageEntry]) -> str:
        where = f" at frame {self.frame}" if self.frame is not None else ""
        return f"{rank_name(self.rank, stages)} failed{where}: {self.cause}"


def rank_name(rank: int, stages: Sequence[StageEntry]) -> str:
    if 0 <= rank < len(stages):
        return f"rank {rank} (stage {rank} on device '{stages[rank].device}')"
    return f"rank {rank}"


def report_rank_error(workdir: Path, rank: int, exc: BaseException, frame: int | None) -> None:
    """Leave the error where the launcher looks: a file in the run directory and one stderr line."""
    record = {
        "rank": rank,
        "cause": exc.message if isinstance(exc, EdgecError) else f"{type(exc).__name__}: {exc}",
        "frame": frame,
        "detail": "".join(traceback.format_exception(exc))[-4000:],
        "time": time.time(),
    }
    text = json.dumps(record)
    try:
        path = workdir / f"error-rank{rank}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        pass
    print(STDERR_MARK + text, file=sys.stderr, flush=True)


def read_rank_errors(workdir: Path, mpirun_output: str) -> list[RankError]:
    """Errors reported by ranks, earliest first (later ones are usually consequences)."""
    records = []
    for path in sorted(workdir.glob("error-rank*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if not records:
        for line in mpirun_output.splitlines():
            _, mark, payload = line.partition(STDERR_MARK)
            if mark:
                try:
                    records.append(json.loads(payload))
                except json.JSONDecodeError:
                    continue
    errors = [RankError(r["rank"], r["cause"], r.get("frame"), r.get("detail", ""), r.get("time", 0.0)) for r in records]
    return sorted(errors, key=lambda e: e.time)


_EXIT = re.compile(r"Process name:\s*\[\[\d+,\d+\],(\d+)\]\s*\n\s*Exit code:\s*(\d+)")
_SIGNAL = re.compile(r"process rank (\d+) with PID \d+ on node \S+ exited on signal (\d+)(?: \(([^)]*)\))?")


def crashed_rank(mpirun_output: str) -> tuple[int, str] | None:
    """The rank `mpirun` blames for ending the job, and how it ended."""
    if m := _EXIT.search(mpirun_output):
        return int(m.group(1)), f"exited with code {m.group(2)} without finishing"
    if m := _SIGNAL.search(mpirun_output):
        name = f" ({m.group(3)})" if m.group(3) else ""
        return int(m.group(1)), f"was killed by signal {m.group(2)}{name}"
    return None


def _doing(rank: int, state: State | None, stages: Sequence[StageEntry]) -> str:
    if state is None:
        return f"{rank_name(rank, stages)} had not started"
    return f"{rank_name(rank, stages)} was {describe(*state)}"


def stuck_ranks(states: tuple[State | None, ...], stages: Sequence[StageEntry], *, first: int | None = None,
                leave_out: int | None = None) -> str:
    """What each rank was doing when the run was stopped: `first`, then busy ranks (the likely
    culprits), then those waiting on others; `leave_out` is not listed."""
    lead, busy, waiting = [], [], []
    for rank, state in enumerate(states):
        if rank == leave_out:
            continue
        text = _doing(rank, state, stages)
        (lead if rank == first else waiting if state is not None and state[1] in WAITING else busy).append(text)
    return "; ".join(lead + busy + waiting)


def stopped(stop: Stop, stages: Sequence[StageEntry]) -> RuntimeFailure:
    """The failure of a run stopped at one of its time limits, naming the rank to blame."""
    states = stop.states
    if stop.reason == "startup":
        late = [_doing(r, s, stages) for r, s in enumerate(states) if not is_ready(s)]
        ready = [rank_name(r, stages) for r, s in enumerate(states) if is_ready(s)]
        return RuntimeFailure(
            f"the ranks were not all ready within {stop.limit:g} s (--startup-timeout) and the run was stopped; "
            f"not ready: {'; '.join(late)}" + (f"; ready: {', '.join(ready)}" if ready else ""),
            hint="starting a rank means launching it, importing, and loading its stage; on a busy machine or "
                 "with a large model raise --startup-timeout")
    if stop.reason == "connect":
        return RuntimeFailure(
            f"every rank reached its first collective, but MPI did not connect them within {stop.limit:g} s "
            "(--stall-timeout) and the run was stopped",
            hint="Open MPI's messages are below; a TCP connection it dropped as coming from an unexpected address "
                 "means a host has several interfaces: name one with OMPI_MCA_btl_tcp_if_include")
    if stop.reason == "stall":
        holder = oldest_holder(states)
        if holder is None:
            return RuntimeFailure(f"no frame completed on any rank for {stop.limit:g} s (--stall-timeout) and the run "
                                  f"was stopped: {stuck_ranks(states, stages)}",
                                  hint="raise --stall-timeout if one frame of a stage takes longer")
        frame, phase = states[holder]
        doing = "was computing it" if phase not in WAITING else f"was {describe(frame, phase)}"
        oldest = held_frame(states[holder])
        rest = stuck_ranks(states, stages, leave_out=holder)
        return RuntimeFailure(
            f"no frame completed on any rank for {stop.limit:g} s (--stall-timeout) and the run was stopped: "
            f"{rank_name(holder, stages)} holds the oldest frame ({oldest}) and {doing}" + (f"; {rest}" if rest else ""),
            hint="raise --stall-timeout if one frame of a stage takes longer")
    return RuntimeFailure(f"the run did not finish within {stop.limit:g} s (--timeout) and was stopped: "
                          f"{stuck_ranks(states, stages, first=oldest_holder(states))}",
                          hint="raise --timeout (or leave it off: the start-up and stall limits catch hangs)")


def tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    return "\n".join(kept[-lines:])
