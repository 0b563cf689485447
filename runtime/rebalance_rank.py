"""One MPI rank of `edgec run --rebalance`: the frame loop in plan epochs, switching plans at frame boundaries.

    mpirun -np R python -m edgec.runtime.rebalance_rank OUT RUNDIR --frames N [--warmup W] --window W
        [--slow RANK:FACTOR ...] [--keep-outputs]

Why epochs and boundaries: a switch must lose no frame and reorder none, so every rank must end
the old plan after the same frame and start the new one at the next. Frames are cut into windows
of W; at each boundary B = b·W the ranks either go on (the `FrameLoop` simply continues: no
drain) or all switch. Rank 0 decides: half a window ahead, at frame B − W/2, it looks for a
candidate plan the launcher has compiled (`RUNDIR/rebalance/ready-<i>`) and starts a
non-blocking broadcast of its answer (0: go on, i: switch to plan i); every other rank posted
the matching receive (`Ibcast`) at the previous boundary and waits on it after its kernel of
frame B − 2, the last moment before it would post the receives of frame B. Rank 0 runs ahead
of the others (it feeds them, and synchronous sends keep them within a few frames), so with
W/2 larger than the pipeline depth the answer is there before anyone waits for it. On a
switch each rank finishes frames < B with the old loop (its sends drain, so no message of the
old plan is left in flight), opens its stage of plan i (the same rank: plans differ only in
split points) and continues from B with a new loop. Frame B's buffer set and tag parity are
B mod 2 in both plans, as W is even.

Each rank publishes its per-frame compute seconds in a mapped file `RUNDIR/compute-rank<k>` (NaN
until computed), which the launcher reads to decide (`rebalance.py`). Outputs are gathered per
epoch with that epoch's manifest, so they stay in frame order whichever stage computes them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from ..compiler.diagnostics import UsageError
from .failure import report_rank_error
from .inputs import rank_inputs
from .mpi_rank import _write_atomic, crash_hook, gather_outputs
from .outputs import CompiledOutput
from .pipeline import FrameLoop, TensorSpec
from .replica_frames import rank_row
from .progress import CONNECT, DONE, READY, SETUP, current_frame, open_progress
from .report import summarize
from .slow import slowed
from .stage_kernel import kernel_for, links, output_specs


def compute_file(rundir: Path, rank: int) -> Path:
    return rundir / f"compute-rank{rank}"


def plan_dir(rundir: Path, index: int) -> Path:
    """Where the launcher compiles candidate plan `index` (1, 2, …); plan 0 is the output run."""
    return rundir / "rebalance" / f"plan-{index}"


def ready_file(rundir: Path, index: int) -> Path:
    return rundir / "rebalance" / f"ready-{index}"


def finished_file(rundir: Path) -> Path:
    """Written by the launcher once it proposes no more plans."""
    return rundir / "rebalance" / "finished"


def adopted_file(rundir: Path, index: int) -> Path:
    """Written by rank 0 when it broadcasts a switch to plan `index`; holds the boundary frame."""
    return rundir / "rebalance" / f"adopted-{index}"


class Switchboard:
    """The ranks' agreement on plan switches at window boundaries (see the module's docstring), as the frame
    loop's `after_kernel` hook; it also publishes each frame's compute time."""

    def __init__(self, comm: MPI.Comm, rundir: Path, window: int, total: int, warmup: int) -> None:
        self.comm, self.rundir, self.window, self.total = comm, rundir, window, total
        self.root = comm.Get_rank() == 0
        self.published = np.memmap(compute_file(rundir, comm.Get_rank()), np.float64, "w+", shape=(total,))
        self.published[:] = np.nan
        self.signal = np.zeros(1, np.int64)
        self.request: MPI.Request | None = None
        self.plan = 0
        self.switches: list[dict] = []
        self.origin = 0.0
        first = (warmup // window + 2) * window
        hold = os.environ.get("EDGEC_TEST_REBALANCE_HOLD", "")
        self.hold = int(hold) if hold.isdigit() else None
        self.boundary: int | None = None
        self._next(first)

    def _next(self, boundary: int) -> None:
        """Arm the next boundary (none past the run's last frame); non-roots post its receive now."""
        self.boundary = boundary if boundary < self.total else None
        if self.boundary is not None and not self.root:
            self.request = self.comm.Ibcast(self.signal, root=0)

    def _hold(self) -> None:
        """The test hook EDGEC_TEST_REBALANCE_HOLD=FRAME: at the first decision for a boundary >= FRAME, rank 0
        waits until the launcher's next candidate is ready or the launcher has stopped rebalancing, so a test
        sees a switch however fast the frames run."""
        self.hold = None
        while not (ready_file(self.rundir, self.plan + 1).exists() or finished_file(self.rundir).exists()):
            time.sleep(0.01)

    def after_kernel(self, frame: int, seconds: float) -> bool:
        self.published[frame] = seconds
        b = self.boundary
        if b is None:
            return True
        if self.root and frame == b - self.window // 2:
            if self.hold is not None and b >= self.hold:
                self._hold()
            self.signal[0] = self.plan + 1 if ready_file(self.rundir, self.plan + 1).exists() else 0
            self.request = self.comm.Ibcast(self.signal, root=0)
        if frame != b - 2:
            return True
        assert self.request is not None
        self.request.Wait()
        self.request = None
        choice = int(self.signal[0])
        self._next(b + self.window)
        if choice == 0:
            return True
        self.plan = choice
        self.switches.append({"frame": b, "plan": choice, "time_s": time.perf_counter() - self.origin})
        if self.root:
            _write_atomic(adopted_file(self.rundir, choice), lambda f: f.write(str(b).encode()))
        return False


def stage_loop(comm: MPI.Comm, compiled: CompiledOutput, rundir: Path, rank: int, spin: bool, slow: tuple[str, ...],
               keep: bool, first: int, hook) -> FrameLoop:
    """This rank's loop over `compiled` from global frame `first` (its stage in that plan)."""
    manifest = compiled.manifest
    table = rank_row(compiled.root, rank)
    recvs, sends = links(table["recvs"]), links(table["sends"])
    mine = [spec for _, spec in manifest.stage_outputs(rank)]
    known = {link.tensor: link.spec for link in sends}
    known.update({spec.name: TensorSpec(spec.shape, spec.np_dtype) for spec in mine})
    session = compiled.session(rank, spin=spin)
    return FrameLoop(comm, recvs, sends, rank_inputs(manifest, rank, rundir), output_specs(session, known),
                     slowed(kernel_for(session), rank, slow), tag_stride=len(manifest.transfers),
                     keep=[spec.name for spec in mine] if keep else [], before_frame=crash_hook(rank),
                     progress=hook["progress"], first=first, after_kernel=hook["after_kernel"])


def run_rank(out: Path, rundir: Path, frames: int, warmup: int, window: int, keep_outputs: bool,
             slow: tuple[str, ...]) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    state = open_progress(rundir, rank)
    compiled = CompiledOutput.open(out)
    if comm.Get_size() != len(compiled.stages):
        raise UsageError(f"started with {comm.Get_size()} ranks, but '{out}' has {len(compiled.stages)} stages")
    total = warmup + frames
    state[1] = CONNECT
    host = comm.Split_type(MPI.COMM_TYPE_SHARED)
    host_threads = host.allreduce(compiled.manifest.stage(rank).threads or 1)
    host.Free()
    spin = host_threads <= (os.cpu_count() or 1)
    state[1] = SETUP
    board = Switchboard(comm, rundir, window, total, warmup)
    hook = {"progress": state, "after_kernel": board.after_kernel}
    loop = stage_loop(comm, compiled, rundir, rank, spin, slow, keep_outputs, 0, hook)
    state[1] = READY
    comm.Barrier()
    board.origin = origin = time.perf_counter()
    epochs, start = [], 0
    while True:
        plan = board.plan
        stats = loop.run(total, keep_from=warmup)
        loop.close()
        epochs.append({"plan": plan, "start": start, "stats": stats, "kept": loop.kept, "compiled": compiled})
        start += len(stats.compute)
        if start >= total:
            break
        compiled = CompiledOutput.open(plan_dir(rundir, board.plan))
        loop = stage_loop(comm, compiled, rundir, rank, spin, slow, keep_outputs, start, hook)
    outputs: dict[str, list[np.ndarray]] = {}
    for epoch in epochs:
        measured = max(0, epoch["start"] + len(epoch["stats"].compute) - max(epoch["start"], warmup))
        if keep_outputs:
            for name, array in gather_outputs(comm, epoch["compiled"].manifest, epoch["kept"], measured).items():
                outputs.setdefault(name, []).append(array)
    stats = {key: np.concatenate([getattr(e["stats"], key) for e in epochs]).tolist()
             for key in ("start", "end", "compute", "wait", "send")}
    manifest = epochs[-1]["compiled"].manifest
    sends = links(rank_row(epochs[-1]["compiled"].root, rank)["sends"])
    record = {"rank": rank, "host": MPI.Get_processor_name(), "origin": origin, "stats": stats, "straggled": 0,
              "stage": rank, "replica": 0, "replicas": 1, "device": manifest.stage(rank).device,
              "sent": [{"peer": link.peer, "tensor": link.tensor, "bytes": link.spec.nbytes, "frames": frames}
                       for link in sends],
              "epochs": [{"plan": e["plan"], "start": e["start"], "frames": len(e["stats"].compute),
                          "compute_ms": 1e3 * float(np.mean(e["stats"].compute))} for e in epochs]}
    records = comm.gather(record, root=0)
    if rank == 0:
        report = summarize(manifest, records, frames=frames, warmup=warmup)
        report["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip(" \x00")
        report["rebalance"] = switch_figures(records, board.switches, window, total)
        if keep_outputs:
            merged = {name: np.concatenate(parts) for name, parts in outputs.items()}
            _write_atomic(rundir / "outputs.npz", lambda f: np.savez(f, **merged))
        import json

        _write_atomic(rundir / "report.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    state[1] = DONE


def switch_figures(records: list[dict], switches: list[dict], window: int, total: int) -> dict:
    """Per switch: frames/s at the last rank over the window before the boundary, over a window after it (once the
    new pipeline has filled: a frame per stage later) and from then until the next switch or the end (`steady_fps`),
    and the pause, the gap between the last frame of the old plan and the first of the new at the last rank; per
    rank and epoch, its mean compute."""
    sink = max(records, key=lambda r: r["rank"])
    end = np.asarray(sink["stats"]["end"])
    depth = len(records)

    def rate(a: int, b: int) -> float | None:
        a, b = max(a, 0), min(b, total - 1)
        return (b - a) / float(end[b] - end[a]) if b > a and end[b] > end[a] else None

    rows = []
    for s, later in zip(switches, [*switches[1:], None]):
        b, until = s["frame"], total - 1 if later is None else later["frame"] - 1
        rows.append({**s, "before_fps": rate(b - window, b - 1), "after_fps": rate(b + depth, b + depth + window),
                     "steady_fps": rate(b + depth, until), "pause_s": float(end[b] - end[b - 1])})
    return {"window": window, "switches": rows,
            "epochs": {r["rank"]: r["epochs"] for r in records}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgec.runtime.rebalance_rank", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("rundir", type=Path)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--slow", action="append", default=[])
    parser.add_argument("--keep-outputs", action="store_true")
    args = parser.parse_args(argv)
    rank = MPI.COMM_WORLD.Get_rank()
    try:
        run_rank(args.out, args.rundir, args.frames, args.warmup, args.window, args.keep_outputs, tuple(args.slow))
    except BaseException as exc:  # noqa: BLE001 - any failure must end the whole job, not hang the others
        report_rank_error(args.rundir, rank, exc, current_frame(args.rundir, rank))
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(2)


if __name__ == "__main__":
    main()
