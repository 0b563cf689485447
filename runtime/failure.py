"""How a distributed run fails: one error type, and the traces a failing rank leaves behind.

A run must end with one message naming the rank, its stage and the cause, never a hang. A
rank that catches an exception leaves an `error-rank<k>.json` in the shared run directory
(and the same JSON on one stderr line, for hosts that do not share that directory) before it
aborts the job; a rank that dies without a word is named by parsing what `mpirun` prints.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..compiler.diagnostics import EdgecError
from .progress import WAITING, describe, read_progress

STDERR_MARK = "EDGEC_RANK_ERROR "


class RuntimeFailure(EdgecError):
    """A distributed run that did not finish: a rank crashed, raised, or the run timed out."""


@dataclass(frozen=True)
class RankError:
    rank: int
    cause: str
    frame: int | None = None
    detail: str = ""
    time: float = 0.0

    def describe(self, stages: list[dict]) -> str:
        where = f" at frame {self.frame}" if self.frame is not None else ""
        return f"{rank_name(self.rank, stages)} failed{where}: {self.cause}"


def rank_name(rank: int, stages: list[dict]) -> str:
    if 0 <= rank < len(stages):
        stage = stages[rank]
        return f"rank {rank} (stage {rank} on device '{stage['device']}')"
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


def stuck_ranks(rundir: Path, stages: list[dict]) -> str:
    """What each rank was doing when the run was stopped, busy ranks (the likely culprits) first."""
    busy, waiting = [], []
    for rank in range(len(stages)):
        state = read_progress(rundir, rank)
        if state is None:
            busy.append(f"{rank_name(rank, stages)} had not started")
            continue
        text = f"{rank_name(rank, stages)} was {describe(*state)}"
        (waiting if state[1] in WAITING else busy).append(text)
    return "; ".join(busy + waiting)


def tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    return "\n".join(kept[-lines:])
