"""The Open MPI rankfile and the per-rank send/recv tables (`comm.json`).

One rank per stage, rank = stage index; a replicated stage's further replicas get ranks after
all stages, and their rows say which frames they carry (`replica_records.py`). Ranks on the same host get consecutive core slots
(wrapping at the device's core count) so co-located stages do not fight over one core.
"""

from __future__ import annotations

from ..compiler.program import Program, Transfer
from .replica_records import placed_ranks, replicated_comm_tables


def rankfile_text(program: Program) -> str:
    lines = ["# Open MPI rankfile written by edgec: one rank per stage (mpirun --rankfile rankfile)"]
    cursor: dict[str, int] = {}
    for rank, _stage, name, threads in placed_ranks(program):
        device = program.platform.devices[name]
        host = device.host or device.name
        width = threads or 1
        start = cursor.get(host, 0) % max(device.cores, 1)
        end = min(start + width, max(device.cores, 1)) - 1
        cursor[host] = start + width
        slot = f"{start}-{end}" if end > start else f"{start}"
        lines.append(f"rank {rank}={host} slot={slot}")
    return "\n".join(lines) + "\n"


def _entry(t: Transfer, peer: int) -> dict:
    return {"peer": peer, "tag": t.tag, "tensor": t.tensor, "bytes": t.nbytes, "shape": list(t.shape), "dtype": t.dtype}


def comm_tables(program: Program) -> dict:
    ranks = []
    for stage in program.stages:
        ranks.append({
            "rank": stage.rank,
            "stage": stage.index,
            "device": stage.device,
            "resource": stage.resource,
            "recvs": [_entry(t, t.src) for t in program.transfers if t.dst == stage.index],
            "sends": [_entry(t, t.dst) for t in program.transfers if t.src == stage.index],
        })
    return replicated_comm_tables(program, {"ranks": ranks}, _entry)
