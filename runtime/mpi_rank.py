"""One MPI rank of `edgec run`: load this rank's stage, run the frame loop, hand results to rank 0.

    mpirun -np R python -m edgec.runtime.mpi_rank OUT RUNDIR --frames N [--warmup W] [--keep-outputs]
        [--cdc-wait MS] [--straggler SPEC ...] [--rate FPS] [--kill RANK@FRAME ...] [--fault-tolerant]

With --fault-tolerant (started by ULFM's mpiexec, `ulfm_mpi.py`) the ranks go on without a dead rank the
fault model allows (`fault_model.py`) and finish on the survivors' communicator.
R is the number of ranks: one per stage, plus one per further replica of a replicated stage
(`replica_frames.py`: each rank computes the frames of its replica).
Started by `edgec.runtime.launcher`, never by hand in normal use. RUNDIR is the run's directory
(shared by all ranks): the input-owning ranks read `inputs.npz` there (`inputs.rank_inputs`),
rank 0 writes `report.json` and `outputs.npz` there, every rank keeps its (frame, phase) in a
mapped `progress-rank<k>` file (READY once its stage is loaded, which starts the launcher's
stall clock), and a failing rank leaves `error-rank<k>.json` there and aborts the whole job, so
the launcher can name the rank and the cause instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from mpi4py import MPI

from ..backends.manifest import Manifest
from ..compiler.diagnostics import UsageError
from .cdc_merge import CodedMerge, decodable
from .failure import report_rank_error
from .fault_model import chain, kill_hook, kill_records, parse_kills
from .faults import parse_straggler, schedule
from .inputs import rank_inputs
from .outputs import CompiledOutput
from .pipeline import FrameLoop, TensorSpec
from .progress import CONNECT, DONE, READY, SETUP, current_frame, open_progress
from .replica_frames import (gather_outputs as gather_dealt_outputs, rank_roles, rank_row,
                             replica_session, threads_of, with_peer_counts)
from .report import summarize
from .slow import slowed
from .stage_kernel import kernel_for, links, output_specs
from .ulfm_mpi import guard_sends, loss_figures, survivors
from .ulfm_mpi import skip_finalize, tolerate as ulfm_failures


def crash_hook(rank: int) -> Callable[[int], None] | None:
    """The test hook that makes one rank fail at one frame: EDGEC_TEST_CRASH_RANK, _FRAME (default 0)
    and _HOW: `exit` (os._exit(17), no message), `raise` (an exception), `hang` (sleep forever) or `kill` (SIGKILL,
    leaving no trace: a loss nobody injected with --kill)."""
    if os.environ.get("EDGEC_TEST_CRASH_RANK") != str(rank):
        return None
    at, how = int(os.environ.get("EDGEC_TEST_CRASH_FRAME", "0")), os.environ.get("EDGEC_TEST_CRASH_HOW", "exit")

    def hook(frame: int) -> None:
        if frame != at:
            return
        if how == "raise":
            raise RuntimeError("injected failure (EDGEC_TEST_CRASH_HOW=raise)")
        while how == "hang":
            time.sleep(1)
        if how == "kill":
            os.kill(os.getpid(), 9)
        os._exit(17)

    return hook


def slow_start(rank: int) -> None:
    """The test hook that delays one rank's start-up: EDGEC_TEST_SLOW_START=RANK:SECONDS (`inf`: never
    ready), so tests can tell a slow start from a hang without depending on how fast processes start."""
    spec = os.environ.get("EDGEC_TEST_SLOW_START", "")
    who, _, seconds = spec.partition(":")
    if who != str(rank):
        return
    delay = float(seconds or "inf")
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))


def emulated_latency(rundir: Path, rank: int, sends: list) -> list[float]:
    """Per send, the latency an emulated cluster asks this rank to add (`cluster.mpi`'s emulation.json;
    none outside a cluster)."""
    path = rundir / "emulation.json"
    if not path.is_file():
        return []
    table = json.loads(path.read_text()).get("send_latency_s", {})
    return [float(table.get(f"{rank},{link.peer}", 0.0)) for link in sends]


def gather_outputs(comm: MPI.Comm, manifest: Manifest, kept: dict[str, np.ndarray],
                   frames: int, renumber: dict[int, int] | None = None) -> dict[str, np.ndarray]:
    """Graph outputs of all measured frames, on rank 0 (raw bytes, tags after the frame tags). `renumber`: the
    survivors' ranks by old rank when `comm` is the shrunk communicator of a fault-tolerant run (an output's owner
    is never a survivable rank, so it is alive)."""
    rank, base = comm.Get_rank(), 2 * len(manifest.transfers)
    gathered: dict[str, np.ndarray] = {}
    for index, spec in enumerate(manifest.model.outputs):
        owner = spec.stage if renumber is None else renumber[spec.stage]
        if rank == owner and owner != 0:
            comm.Send([kept[spec.name], MPI.BYTE], 0, base + index)
        elif rank == 0:
            if owner == 0:
                gathered[spec.name] = kept[spec.name]
            else:
                array = np.empty((frames, *spec.shape), spec.np_dtype)
                comm.Recv([array, MPI.BYTE], owner, base + index)
                gathered[spec.name] = array
    return gathered


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        write(f)
    tmp.replace(path)


def coded_merge(comm: MPI.Comm, manifest: Manifest, recvs: list, cdc_wait_ms: float) -> tuple[list, CodedMerge | None]:
    """(the receives the loop keeps, the merge of the coded layers this rank decodes, if any)."""
    rank = comm.Get_rank()
    layers = [e for e in (manifest.cdc.layers if manifest.cdc is not None else ()) if decodable(e, rank)]
    if not layers:
        return recvs, None
    rows = {name for e in layers for name in (*e.parts, *e.parities)}
    coded = CodedMerge(comm, layers, [link for link in recvs if link.tensor in rows], len(manifest.transfers),
                       wait_s=cdc_wait_ms / 1e3)
    return [link for link in recvs if link.tensor not in rows], coded


def run_rank(out: Path, rundir: Path, frames: int, warmup: int, keep_outputs: bool, engine: str = "onnxruntime",
             cdc_wait_ms: float = 0.0, stragglers: tuple[str, ...] = (), rate: float = 0.0,
             slow: tuple[str, ...] = (), kills: tuple[str, ...] = (), tolerant: bool = False) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    state = open_progress(rundir, rank)
    if tolerant:
        comm.Set_errhandler(MPI.ERRORS_RETURN)
    compiled = CompiledOutput.open(out)
    manifest = compiled.manifest
    roles = rank_roles(out)
    if comm.Get_size() != len(roles):
        raise UsageError(f"started with {comm.Get_size()} ranks, but '{out}' has {len(roles)} ranks "
                         f"({len(compiled.stages)} stages)")
    role = roles[rank]
    table = rank_row(out, rank)
    recvs, sends = with_peer_counts(links(table["recvs"]), roles), with_peer_counts(links(table["sends"]), roles)
    mine = [spec for _, spec in manifest.stage_outputs(role.stage)]
    known = {link.tensor: link.spec for link in sends}
    known.update({spec.name: TensorSpec(spec.shape, spec.np_dtype) for spec in mine})
    threads = threads_of(manifest, role)
    state[1] = CONNECT
    host = comm.Split_type(MPI.COMM_TYPE_SHARED)
    host_threads = host.allreduce(threads)
    host.Free()
    state[1] = SETUP
    session = replica_session(compiled, role, engine, None, spin=host_threads <= (os.cpu_count() or 1))
    recvs, coded = coded_merge(comm, manifest, recvs, cdc_wait_ms)
    failures = ulfm_failures(comm, manifest, state) if tolerant else None
    if coded is not None:
        coded.failures = failures
    dies = kill_hook(parse_kills(kills, manifest, warmup + frames), rank, list(role.frames(warmup + frames)), rundir)
    delays = schedule([parse_straggler(s, manifest) for s in stragglers], manifest, rank,
                      len(role.frames(warmup + frames)))
    loop = FrameLoop(
        comm, recvs, sends, rank_inputs(manifest, role.stage, rundir), output_specs(session, known),
        slowed(kernel_for(session), rank, slow),
        tag_stride=len(manifest.transfers), keep=[spec.name for spec in mine] if keep_outputs else [],
        before_frame=chain(crash_hook(rank), dies), progress=state, send_latency=emulated_latency(rundir, rank, sends),
        coded=coded, straggle=None if delays is None else delays.item, interval=1.0 / rate if rate > 0 else 0.0,
        first=role.replica, step=role.count,
    )
    if failures is not None:
        guard_sends(loop, failures)
    slow_start(rank)
    state[1] = READY
    comm.Barrier()
    origin = time.perf_counter()
    stats = loop.run(warmup + frames, keep_from=warmup)
    loop.close()
    world, (comm, renumber) = comm, survivors(comm) if tolerant else (comm, None)
    if renumber is not None:
        outputs = gather_outputs(comm, manifest, loop.kept, frames, renumber) if keep_outputs else {}
    elif manifest.replicas is None:
        outputs = gather_outputs(comm, manifest, loop.kept, frames) if keep_outputs else {}
    else:
        outputs = gather_dealt_outputs(comm, manifest, roles, loop.kept, frames, warmup) if keep_outputs else {}
    local = role.frames(warmup + frames)
    skipped = sum(1 for f in local if f < warmup)
    record = {"rank": rank, "host": MPI.Get_processor_name(), "origin": origin, "stats": vars(stats),
              "straggled": 0 if delays is None else int(np.count_nonzero(delays[skipped:])),
              "stage": role.stage, "replica": role.replica, "replicas": role.count, "device": role.device,
              "frames": list(local),
              "sent": [{"peer": link.peer, "tensor": link.tensor, "bytes": link.spec.nbytes,
                        "frames": sum(1 for f in local if f >= warmup and link.carries(f))} for link in sends]}
    if coded is not None:
        record["cdc"] = {"rebuilt": coded.rebuilt[warmup:], "errors": coded.errors, "late": coded.late,
                         "part_ranks": coded.part_ranks()}
    if failures is not None:
        record["failures"] = failures.records()
    records = comm.gather(record, root=0)
    if rank == 0:
        report = summarize(manifest, records, frames=frames, warmup=warmup)
        report["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip(" \x00")
        if failures is not None:
            report |= loss_figures(manifest, records, world.Get_size(), kill_records(rundir), frames, warmup)
        if keep_outputs:
            _write_atomic(rundir / "outputs.npz", lambda f: np.savez(f, **outputs))
        _write_atomic(rundir / "report.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    if renumber is not None:
        comm.Barrier()
    state[1] = DONE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgec.runtime.mpi_rank", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("rundir", type=Path)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--keep-outputs", action="store_true")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--cdc-wait", type=float, default=0.0)
    parser.add_argument("--straggler", action="append", default=[])
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--slow", action="append", default=[])
    parser.add_argument("--kill", action="append", default=[])
    parser.add_argument("--fault-tolerant", action="store_true")
    args = parser.parse_args(argv)
    rank = MPI.COMM_WORLD.Get_rank()
    try:
        run_rank(args.out, args.rundir, args.frames, args.warmup, args.keep_outputs, args.engine, args.cdc_wait,
                 tuple(args.straggler), args.rate, tuple(args.slow), kills=tuple(args.kill),
                 tolerant=args.fault_tolerant)
    except BaseException as exc:  # noqa: BLE001 - any failure must end the whole job, not hang the others
        report_rank_error(args.rundir, rank, exc, current_frame(args.rundir, rank))
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(2)
    if args.fault_tolerant:
        skip_finalize()


if __name__ == "__main__":
    main()
