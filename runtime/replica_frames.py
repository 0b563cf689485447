"""Which frames each MPI rank computes when stages are replicated, and how their results come back in order.

Why a module of its own: with `replicate`, a rank is no longer "stage = rank". comm.json gives
every rank its (stage, replica) and every link the frames it carries (`replica_records.py`);
this module turns that into what a rank needs before its frame loop starts (its role, its
sub-model session, the peer replica counts that fix the send tags) and into what rank 0 needs
after it (the graph outputs of every measured frame, put back at index f from replica f mod r,
local index f // r). Frame f is computed by replica f mod r: the rule the compiler wrote down.
mpi4py is imported only inside the ranks' functions: the launcher and the CLI import this module
for its checks, and importing `mpi4py.MPI` there would initialise MPI in the launcher itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..compiler.diagnostics import ModelError, UsageError, first_line

if TYPE_CHECKING:
    from mpi4py import MPI

    from .pipeline import Link

from ..backends.replica_records import MPI_ENGINES as ENGINES, refuse_mpi_with_replicas



@dataclass(frozen=True)
class RankRole:
    """Rank `rank` is replica `replica` of stage `stage`, which runs as `count` replicas."""

    rank: int
    stage: int
    replica: int
    count: int
    device: str

    def frames(self, total: int) -> range:
        """The global frames this rank computes in a run of `total` frames."""
        return range(self.replica, total, self.count)


def rank_roles(out: Path) -> list[RankRole]:
    """Every rank's role, by rank, from the output's comm.json (one row per stage without replicas)."""
    rows = sorted(json.loads((Path(out) / "comm.json").read_text())["ranks"], key=lambda r: r["rank"])
    counts: dict[int, int] = {}
    for row in rows:
        counts[row["stage"]] = counts.get(row["stage"], 0) + 1
    return [RankRole(row["rank"], row["stage"], row.get("replica", 0), counts[row["stage"]], row["device"])
            for row in rows]


def rank_row(out: Path, rank: int) -> dict:
    """Rank `rank`'s row of comm.json (its recvs and sends with their frame filters)."""
    for row in json.loads((Path(out) / "comm.json").read_text())["ranks"]:
        if row["rank"] == rank:
            return row
    raise UsageError(f"'{out}/comm.json' has no row for rank {rank}")


def with_peer_counts(links: Sequence["Link"], roles: Sequence[RankRole]) -> list["Link"]:
    """The links with `peer_replicas` set from the peer rank's stage, so a producer tags a frame with its
    consumer's local parity."""
    by_rank = {role.rank: role for role in roles}
    return [dataclasses.replace(link, peer_replicas=by_rank[link.peer].count) for link in links]


def check_replicated_run(manifest, engine: str, emulated: bool) -> None:
    """What the MPI runtime cannot run with replicas yet: one UsageError naming it."""
    if manifest.replicas is None:
        return
    refuse_mpi_with_replicas(manifest, engine)
    if emulated:
        raise UsageError("--emulate does not run replicated stages yet (its hostfile and rankfile have one rank "
                         "per stage)", hint="run it on this machine or with --hosts and the output's rankfile")
    if manifest.cdc is not None:
        replicated = {s.stage for s in manifest.replicas.stages}
        touched = replicated | {t.dst for t in manifest.transfers if t.src in replicated} | {
            t.src for t in manifest.transfers if t.dst in replicated}
        for layer in manifest.cdc.layers:
            ranks = set(_layer_ranks(layer))
            if ranks & touched:
                raise UsageError("a coded (cdc) layer next to a replicated stage cannot run on MPI yet",
                                 hint="replicate stages that neither hold nor feed a coded layer's parts or merge")


def _layer_ranks(layer) -> list[int]:
    """The stages a coded layer's rows go between: its merge, its parts' and its parities'."""
    return [layer.merge_stage, *layer.part_stages, *layer.parity_stages]


def replica_session(compiled, role: RankRole, engine: str, threads: int | None, spin: bool):
    """The session this rank runs: the stage's own for replica 0, else the replica's own file, so a damaged copy
    fails on its own rank: onnxruntime on its copy of the sub-model (`replicas[i].model`), or with `--engine tvm`
    the module built for its device (the tvm section's `replicas`)."""
    if role.replica == 0:
        return compiled.engine_session(role.stage, engine, threads=threads, spin=spin)
    if engine not in ENGINES or engine == "cpp":
        raise UsageError(f"--engine {engine} cannot run replica {role.replica} of stage {role.stage}")
    if engine == "tvm":
        from .tvm_stage import TvmSession

        return TvmSession.for_replica(compiled, role.stage, role.replica, threads, spin=spin)
    import onnxruntime as ort

    entry = compiled.manifest.replicas.of_stage(role.stage).replicas[role.replica]
    path = compiled.root / entry.model
    if not path.is_file():
        raise UsageError(f"replica {role.replica} of stage {role.stage}: sub-model '{path}' is missing")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or entry.threads or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"replica {role.replica} of stage {role.stage}: onnxruntime cannot load '{path}': "
                         f"{first_line(exc)}") from None


def threads_of(manifest, role: RankRole) -> int:
    if role.replica == 0:
        return manifest.stage(role.stage).threads or 1
    return manifest.replicas.of_stage(role.stage).replicas[role.replica].threads or 1


def gather_outputs(comm: "MPI.Comm", manifest, roles: Sequence[RankRole], kept: dict[str, np.ndarray],
                   frames: int, warmup: int) -> dict[str, np.ndarray]:
    """Graph outputs of the measured frames, on rank 0, in frame order: measured frame i (global f = warmup + i)
    comes from replica f mod r of the output's stage, at its local index (number of its frames below f minus its
    warm-up frames). Raw bytes, tags after the frame tags."""
    from mpi4py import MPI

    rank, base = comm.Get_rank(), 2 * len(manifest.transfers)
    width = max(role.count for role in roles)
    gathered: dict[str, np.ndarray] = {}
    for index, spec in enumerate(manifest.model.outputs):
        owners = [role for role in roles if role.stage == spec.stage]
        for role in owners:
            if rank == role.rank and rank != 0:
                comm.Send([kept[spec.name], MPI.BYTE], 0, base + index * width + role.replica)
        if rank != 0:
            continue
        array = np.empty((frames, *spec.shape), spec.np_dtype)
        for role in owners:
            measured = [f - warmup for f in role.frames(warmup + frames) if f >= warmup]
            if role.rank == 0:
                part = kept[spec.name]
            else:
                part = np.empty((len(measured), *spec.shape), spec.np_dtype)
                comm.Recv([part, MPI.BYTE], role.rank, base + index * width + role.replica)
            array[measured] = part
        gathered[spec.name] = array
    return gathered
