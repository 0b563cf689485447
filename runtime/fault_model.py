"""Killed ranks: `edgec run --kill RANK@FRAME`, which losses a run survives, and what the launcher says about them.

    RANK@FRAME   rank RANK SIGKILLs itself when it reaches frame FRAME: once that frame's inputs are in,
                 before its kernel runs. FRAME counts every frame of the run from 0, warm-up included
                 (the numbers the progress and error messages use), so it is in 0 .. warmup + frames - 1.

Why a kill and not an exception: a device that loses power says nothing; SIGKILL is the closest a
process gets to that (no handler, no MPI_Finalize, sockets closed by the kernel). Before dying the
rank leaves `killed-rank<k>.json` (frame, wall time) in the run directory, the one trace the
launcher can trust to name the rank and frame, and that the report uses for the detection time.

Survivable (the fault model, checked from the manifest alone, so every rank and the launcher agree
without a message): a rank that is not rank 0, not the merge of a coded layer, owns no graph output,
and whose every outgoing transfer is a coded row (part or parity) of a layer whose merge decodes it
(`cdc_merge.decodable`: the merge computes none of the rows itself); and at most R rows of any coded
layer lost. Replicated outputs have no survivable ranks. Everything else ends the run with one
message naming the killed rank.

This module imports no MPI: the launcher uses it before anything starts.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..backends.manifest import Manifest
from ..compiler.diagnostics import UsageError
from .progress import DONE, State, read_all

KILL_RECORD = "killed-rank{rank}.json"


@dataclass(frozen=True)
class Kill:
    """One `--kill` spec: `rank` dies at global frame `frame`."""

    rank: int
    frame: int

    @property
    def spec(self) -> str:
        return f"{self.rank}@{self.frame}"


def rank_total(manifest: Manifest) -> int:
    replicas = manifest.replicas
    return len(manifest.stages) + (sum(len(s.replicas) - 1 for s in replicas.stages) if replicas else 0)


def parse_kill(text: str, manifest: Manifest, total_frames: int) -> Kill:
    """A `--kill` spec checked against the output and the run's frame count (UsageError on anything wrong)."""
    usage = (f"give --kill RANK@FRAME: RANK a rank of this output, FRAME a frame 0..{total_frames - 1} "
             "(warm-up included)")
    who, at, frame = text.partition("@")
    if not at or not who.strip().isdigit() or not frame.strip().isdigit():
        raise UsageError(f"--kill '{text}' is not a kill spec", hint=usage)
    rank, frame_no = int(who), int(frame)
    if rank >= (ranks := rank_total(manifest)):
        raise UsageError(f"--kill '{text}': RANK must be a rank of this output, 0..{ranks - 1}", hint=usage)
    if frame_no >= total_frames:
        raise UsageError(f"--kill '{text}': FRAME must be below the run's {total_frames} frames (--warmup + --frames)",
                         hint=usage)
    return Kill(rank, frame_no)


def parse_kills(texts: Sequence[str], manifest: Manifest, total_frames: int) -> tuple[Kill, ...]:
    kills = tuple(parse_kill(text, manifest, total_frames) for text in texts)
    ranks = [k.rank for k in kills]
    if len(set(ranks)) != len(ranks):
        twice = next(r for r in ranks if ranks.count(r) > 1)
        raise UsageError(f"--kill names rank {twice} twice: a rank dies once")
    return kills


def not_survivable(manifest: Manifest, rank: int) -> str | None:
    """Why the run cannot go on without `rank` (None: it can, given the ULFM runtime; see the module's docstring)."""
    if rank == 0:
        return "rank 0 gathers the report and the outputs"
    if manifest.replicas is not None:
        return "the output has replicated stages, which the fault-tolerant run does not cover"
    layers = manifest.cdc.layers if manifest.cdc is not None else ()
    if not layers:
        return "the output has no coded layer (cdc) whose parity could stand in for it"
    if any(entry.merge_stage == rank for entry in layers):
        return "it is the merge of a coded layer"
    if manifest.stage_outputs(rank):
        return "it computes a graph output"
    rows = {name: entry for entry in layers for name in (*entry.parts, *entry.parities)}
    sends = [t for t in manifest.transfers if t.src == rank]
    if not sends:
        return "it sends no coded row"
    for t in sends:
        entry = rows.get(t.tensor)
        if entry is None or t.dst != entry.merge_stage:
            return f"it sends '{t.tensor}' to rank {t.dst}, which is not a coded row for its merge"
        if entry.merge_stage in (*entry.part_stages, *entry.parity_stages):
            return f"the merge of coded layer '{entry.layer}' computes one of its rows itself, so it does not decode"
    return None


def survivable_ranks(manifest: Manifest) -> frozenset[int]:
    """The ranks each of which alone the run survives (under ULFM)."""
    return frozenset(r for r in range(rank_total(manifest)) if not_survivable(manifest, r) is None)


def too_many(manifest: Manifest, ranks: set[int]) -> str | None:
    """Why losing all of `ranks` at once is too much for some coded layer (None: at most R rows of each lost)."""
    for entry in manifest.cdc.layers if manifest.cdc is not None else ():
        stages = (*entry.part_stages, *entry.parity_stages)
        lost = sum(1 for s in stages if s in ranks)
        if lost > len(entry.parities):
            who = ", ".join(str(s) for s in sorted(set(stages) & ranks))
            return (f"coded layer '{entry.layer}' would lose {lost} of its {len(stages)} rows (ranks {who}) but can "
                    f"rebuild at most {len(entry.parities)}")
    return None


def needs_ulfm(manifest: Manifest, kills: Sequence[Kill]) -> bool:
    """Whether a kill is one the fault-tolerant MPI would survive (so running without it would waste the test)."""
    survivable = survivable_ranks(manifest)
    return any(k.rank in survivable for k in kills) and too_many(manifest, {k.rank for k in kills}) is None


def kill_hook(kills: Sequence[Kill], rank: int, frames: Sequence[int], rundir: Path) -> Callable[[int], None] | None:
    """The frame loop's `before_frame` hook that kills this rank at the first of its local `frames` (global numbers)
    at or after its kill frame; None when no kill names it."""
    at = next((k.frame for k in kills if k.rank == rank), None)
    if at is None:
        return None
    local = next((j for j, f in enumerate(frames) if f >= at), None)

    def hook(j: int) -> None:
        if j == local:
            record = {"rank": rank, "frame": int(frames[j]), "time": time.time()}
            path = rundir / KILL_RECORD.format(rank=rank)
            path.with_suffix(".tmp").write_text(json.dumps(record))
            path.with_suffix(".tmp").replace(path)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def chain(*hooks: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """One `before_frame` hook calling each given hook in turn (None when none is given)."""
    present = [h for h in hooks if h is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def hook(j: int) -> None:
        for h in present:
            h(j)

    return hook


def kill_records(rundir: Path) -> dict[int, dict]:
    """What the killed ranks left (by rank): their frame and wall time."""
    found = {}
    for path in rundir.glob("killed-rank*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found[int(record["rank"])] = record
    return found


def live_states(rundir: Path, ranks: int) -> list[State | None]:
    """The ranks' progress for the launcher's watch, a killed rank counted as done: its progress stops for good, and
    a run that survives it must not be called stalled, nor that rank blamed for the oldest frame."""
    states = read_all(rundir, ranks)
    for rank, record in kill_records(rundir).items():
        if 0 <= rank < ranks:
            states[rank] = (int(record["frame"]), DONE)
    return states


def killed_failure(manifest: Manifest, rundir: Path, name: Callable[[int], str], cause: str | None) -> str | None:
    """The message for a run that ended after a `--kill` (None when no rank was killed): the killed rank first, then
    why the run could not go on (`cause`: the first error a surviving rank reported, if any)."""
    records = kill_records(rundir)
    if not records:
        return None
    killed = sorted(records.values(), key=lambda r: r["time"])
    said = "; ".join(f"{name(r['rank'])} was killed by signal 9 at frame {r['frame']} (--kill {r['rank']}@{r['frame']})"
                     for r in killed)
    ranks = {r["rank"] for r in killed}
    why = next((reason for r in killed if (reason := not_survivable(manifest, r["rank"])) is not None), None)
    why = why or too_many(manifest, ranks) or cause
    return said + (f"; the run cannot survive that: {why}" if why else "")


def survived(rundir: Path, rc: object) -> bool:
    """Whether a run whose mpiexec exited non-zero still finished: under ULFM mpiexec may report the dead rank's exit,
    while the survivors wrote a report that counts it lost and no frame missing (the survivors' word decides)."""
    try:
        report = json.loads((rundir / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(rc, int) and bool(report.get("lost_ranks")) and report.get("frames_lost") == 0


def render_losses(report: dict) -> str:
    """The `edgec run` lines for the ranks a run lost and survived (ULFM)."""
    lines = [f"lost ranks (survived on {report.get('mpi_library', 'the fault-tolerant MPI').split(',')[0]}), "
             f"frames lost: {report.get('frames_lost')}"]
    for lost in report["lost_ranks"]:
        when = f"at frame {lost['frame']}" if lost["frame"] is not None else "(no --kill)"
        noticed = "" if lost.get("detected_by") is None else (
            f", noticed by rank {lost['detected_by']} at its frame {lost['detected_at_frame']}"
            + (f", {lost['detected_after_ms']:.0f} ms after the kill" if lost["detected_after_ms"] is not None else ""))
        lines.append(f"  rank {lost['rank']} (stage {lost['stage']} on device '{lost['device']}') died {when}{noticed}")
    return "\n".join(lines)
