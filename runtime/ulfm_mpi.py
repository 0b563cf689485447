"""Inside a rank under ULFM: notice dead peers, go on without the ones the fault model allows, finish on the survivors.

Why these three pieces, and only these: under the fault model (`fault_model`) a survivable rank
only computes coded rows, so the only ranks that talk to it are its producers (synchronous sends
to it) and the merges of its layers (receives from it). `Failures` turns a request's
MPI_ERR_PROC_FAILED (or MPI_ERR_IN_STATUS from a multi-request call) into the set of dead ranks
(`Ack_failed`, then `Get_failed`), keeps when and at which frame each was first noticed, and
raises at once when a dead rank is not one the run can lose, so such a loss still ends the run
with one message. `SurvivingSends` replaces the frame loop's Startall/Waitall on the sends: it
waits per request, drops every link to a dead rank and goes on; the merge's `CodedMerge` takes
`Failures` too and marks the dead rank's rows lost (rebuilt from parity from then on). At the end
every survivor calls `Shrink` (a collective that works whoever knew of the failure) and the
gathers run on the survivors' communicator, the owners' ranks translated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from mpi4py import MPI

from ..backends.manifest import Manifest
from .failure import RuntimeFailure, rank_name
from .fault_model import not_survivable, survivable_ranks, too_many

FAILED_CLASSES = {getattr(MPI, name) for name in ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED",
                                                   "ERR_IN_STATUS") if hasattr(MPI, name)}


class DeadPeer(RuntimeFailure):
    """A rank died that the run cannot go on without."""


@dataclass
class Failures:
    """The dead ranks this rank knows of, when and at which frame it first noticed each (see the module's docstring)."""

    comm: MPI.Comm
    manifest: Manifest
    tolerated: frozenset[int]
    progress: np.ndarray | None = None
    """The rank's (frame, phase) progress array: the frame a death was noticed at."""
    dead: dict[int, dict] = field(default_factory=dict)

    def is_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, MPI.Exception) and exc.Get_error_class() in FAILED_CLASSES

    def update(self, suspect: int | None = None) -> set[int]:
        """Learn the dead ranks (`suspect`: the peer of the request that failed); raise `DeadPeer` for one the run
        cannot lose; return every dead rank known."""
        self.comm.Ack_failed()
        group = self.comm.Get_failed()
        world = self.comm.Get_group()
        ranks = set(MPI.Group.Translate_ranks(group, list(range(group.Get_size())), world))
        group.Free(), world.Free()
        if suspect is not None:
            ranks.add(suspect)
        for rank in sorted(ranks - set(self.dead)):
            frame = int(self.progress[0]) if self.progress is not None else -1
            self.dead[rank] = {"rank": rank, "frame": frame, "time": time.time()}
            if rank not in self.tolerated:
                raise DeadPeer(f"{rank_name(rank, self.manifest.stages)} died (MPI_ERR_PROC_FAILED) and the run cannot "
                               f"go on without it: {not_survivable(self.manifest, rank)}")
        if (reason := too_many(self.manifest, set(self.dead))) is not None:
            raise DeadPeer(f"ranks {', '.join(map(str, sorted(self.dead)))} died (MPI_ERR_PROC_FAILED): {reason}")
        return set(self.dead)

    def records(self) -> list[dict]:
        return [self.dead[r] for r in sorted(self.dead)]


def tolerate(comm: MPI.Comm, manifest: Manifest, progress: np.ndarray) -> Failures:
    """This rank's `Failures`, tolerating the ranks the fault model says the run survives."""
    return Failures(comm, manifest, survivable_ranks(manifest), progress)


class SurvivingSends:
    """Start/wait for the frame loop's send requests, dropping those to dead ranks (`pipeline.FrameLoop.sending`)."""

    def __init__(self, failures: Failures, peers: dict[int, int]) -> None:
        self.failures = failures
        self.peers = peers
        """Peer rank of each persistent send request, by id() (the loop reuses the same request objects)."""
        self.dropped: set[int] = set()

    def _live(self, requests: Sequence[MPI.Prequest]) -> list[MPI.Prequest]:
        return [r for r in requests if self.peers[id(r)] not in self.dropped]

    def start(self, requests: Sequence[MPI.Prequest]) -> None:
        MPI.Prequest.Startall(self._live(requests))

    def wait(self, requests: Sequence[MPI.Prequest]) -> None:
        """Wait for each request, a dropped link's too (one started before its peer was known dead completes in error
        at once; one never started is inactive and returns at once), so none is left active when the loop frees it."""
        for request in requests:
            try:
                request.Wait()
            except MPI.Exception as exc:
                if not self.failures.is_failure(exc):
                    raise
                self.dropped |= self.failures.update(self.peers[id(request)])


def guard_sends(loop, failures: Failures) -> None:
    """Make `loop` (a `pipeline.FrameLoop`) go on when a consumer dies, the loss being one the run survives."""
    peers = {id(request): link.peer for by_tag in loop._send_reqs for requests in by_tag
             for request, link in zip(requests, loop.sends)}
    loop.sending = SurvivingSends(failures, peers)


def survivors(comm: MPI.Comm) -> tuple[MPI.Comm, dict[int, int]]:
    """(the communicator of the ranks still alive, their old rank -> new rank); every survivor must call it."""
    shrunk = comm.Shrink()
    old, new = comm.Get_group(), shrunk.Get_group()
    mapped = MPI.Group.Translate_ranks(old, list(range(comm.Get_size())), new)
    old.Free(), new.Free()
    return shrunk, {o: n for o, n in enumerate(mapped) if n != MPI.UNDEFINED}


def loss_figures(manifest: Manifest, records: list[dict], world: int, killed: dict[int, dict], frames: int,
                 warmup: int) -> dict:
    """The report's `lost_ranks` (rank, stage, device, frame: the `--kill` frame, None for a loss nobody injected;
    detected_by / detected_at_frame / detected_after_ms: the first merge, or else the first rank, to notice it, the
    frame it was at, and the time from the kill) and `frames_lost` (frames the graph outputs' ranks did not compute)."""
    alive = {r["rank"] for r in records}
    noticed: dict[int, list[tuple[bool, float, int]]] = {}
    for r in records:
        for seen in r.get("failures", []):
            noticed.setdefault(seen["rank"], []).append(("cdc" not in r, seen["time"], r["rank"], seen["frame"]))
    lost = []
    for rank in sorted(set(range(world)) - alive):
        kill = killed.get(rank)
        first = min(noticed.get(rank, []), default=None)
        stage = manifest.stages[rank] if rank < len(manifest.stages) else None
        lost.append({"rank": rank, "stage": rank, "device": stage.device if stage else None,
                     "frame": kill["frame"] if kill else None,
                     "detected_by": first[2] if first else None, "detected_at_frame": first[3] if first else None,
                     "detected_after_ms": 1e3 * (first[1] - kill["time"]) if first and kill else None})
    owners = {spec.stage for spec in manifest.model.outputs}
    computed = [len(r["stats"]["compute"]) for r in records if r["rank"] in owners]
    frames_lost = warmup + frames - min(computed) if len(computed) == len(owners) else warmup + frames
    figures = {"mpi_fault_tolerant": True, "lost_ranks": lost, "frames_lost": int(frames_lost)}
    kill_frames = [k["frame"] for k in killed.values()]
    if kill_frames and frames_lost == 0 and manifest.replicas is None:
        figures["latency_around_loss_ms"] = _latency_around(records, owners, min(kill_frames), frames, warmup)
    return figures


def _latency_around(records: list[dict], owners: set[int], at: int, frames: int, warmup: int) -> dict:
    """p50/p99 of the report's frame latency (`report.summarize`'s: first rank starting the frame to the last graph
    output computed) over the measured frames before the first kill frame and from it on."""
    one_host = len({r["host"] for r in records}) == 1
    start = np.min([np.asarray(r["stats"]["start"]) - (0.0 if one_host else r["origin"]) for r in records], axis=0)
    end = np.max([np.asarray(r["stats"]["end"]) - (0.0 if one_host else r["origin"]) for r in records
                  if r["rank"] in owners], axis=0)
    latency = 1e3 * (end - start)[warmup:warmup + frames]
    split = max(at - warmup, 0)

    def quantiles(values: np.ndarray) -> dict | None:
        return {"frames": int(len(values)), "p50": float(np.percentile(values, 50)),
                "p99": float(np.percentile(values, 99))} if len(values) else None

    return {"before": quantiles(latency[:split]), "after": quantiles(latency[split:])}


def skip_finalize() -> None:
    """End this rank now, without MPI_Finalize: under ULFM (Open MPI 5.0.11) Finalize after a rank died sometimes
    never returns (every survivor polls in ompi_mpi_finalize, the dead rank's part of the closing fence never comes;
    seen once in a few runs). The survivors have passed a barrier after rank 0 wrote the report, so nothing is lost;
    mpiexec may then count them as failed, and the launcher decides by the report (`fault_model.survived`)."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
