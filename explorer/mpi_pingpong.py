"""Two ranks bounce messages to measure Open MPI's cost per message and its bandwidth here.

Run by `edgec profile` as `mpirun -np 2 python -m edgec.explorer.mpi_pingpong OUT.json`: a
small message's half round trip (the median of 400) is the per-message overhead the cost model adds to each link's
latency; a 4 MiB message's gives the bandwidth between ranks on this machine (the link used
when a plan declares none).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from mpi4py import MPI


def _half_round_trip(comm, buffer: np.ndarray, repeats: int) -> list[float]:
    rank, times = comm.Get_rank(), []
    for _ in range(repeats):
        comm.Barrier()
        start = time.perf_counter()
        if rank == 0:
            comm.Send(buffer, 1, 0)
            comm.Recv(buffer, 1, 0)
        else:
            comm.Recv(buffer, 0, 0)
            comm.Send(buffer, 0, 0)
        times.append((time.perf_counter() - start) / 2)
    return times


def main() -> None:
    comm = MPI.COMM_WORLD
    small = _half_round_trip(comm, np.zeros(8, dtype=np.uint8), 400)
    size = 4 << 20
    large = _half_round_trip(comm, np.zeros(size, dtype=np.uint8), 20)
    if comm.Get_rank() == 0:
        overhead = float(np.median(small))
        with open(sys.argv[1], "w") as f:
            json.dump({"message_overhead_s": overhead, "message_overhead_min_s": float(np.min(small)),
                       "bandwidth_Bps": size / float(np.median(large)),
                       "small_repeats": len(small), "large_bytes": size, "large_repeats": len(large)}, f)


if __name__ == "__main__":
    main()
