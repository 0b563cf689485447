"""Benchmark the distributed runtime (`edgec run`) on this machine and print the figures as tables.

    python benchmarks/runtime.py [--frames 40] [--dir /tmp/edgec-runtime-bench]

1. Pipeline efficiency (throughput / (1 / slowest stage's mean compute time)) of ResNet-50
   (the onnx package's light zoo model) split into 2, 3 and 4 stages of equal MACs, one
   thread per stage; stages beyond the core count share cores, which the table says.
2. Throughput of each split next to the unsplit model in one onnxruntime process with the
   same total thread count.
3. Per-hop overhead: one boundary tensor moved through the runtime's frame loop (double
   buffers, parity tags, Issend/Irecv, an empty kernel) against bare mpi4py Send/Recv of the
   same bytes, for 64 KiB, 1 MiB and 16 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

SIZES = (64 << 10, 1 << 20, 16 << 20)
RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def equal_mac_plan(model_path: Path, stages: int) -> str:
    """Contiguous node-name ranges of about equal MACs, one single-threaded device each."""
    import edgec
    from edgec.compiler.cost import macs

    nodes = list(edgec.load_model(model_path).graph)
    cumulative = np.cumsum([macs(n) for n in nodes])
    cuts = [int(np.searchsorted(cumulative, cumulative[-1] * k / stages)) for k in range(1, stages)]
    bounds = [0] + [c + 1 for c in cuts] + [len(nodes)]
    lines = [f"device d{i} {{ arch x86_64 cores 1 }}" for i in range(stages)]
    for i in range(stages):
        first, last = nodes[bounds[i]].name, nodes[bounds[i + 1] - 1].name
        lines.append(f'place "{first}" .. "{last}" on d{i}.cpu threads 1')
    return "\n".join(lines) + "\n"


def unsplit_fps(model_path: Path, threads: int, frames: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads > (os.cpu_count() or 1):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
    for _ in range(3):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(frames):
        session.run(None, feed)
    return frames / (time.perf_counter() - start)


def pipeline_rows(workdir: Path, frames: int) -> list[dict]:
    import edgec
    from edgec.runtime.launcher import run
    from edgec.runtime.outputs import random_inputs

    rows = []
    for stages in (2, 3, 4):
        out = workdir / f"resnet50-{stages}"
        result = edgec.compile(RESNET, equal_mac_plan(RESNET, stages), out)
        report = run(out, random_inputs(result.manifest, 0), frames=frames, warmup=3, timeout=240).report
        rows.append({
            "stages": stages, "report": report, "unsplit_fps": unsplit_fps(RESNET, stages, frames),
            "unsplit_cores_fps": unsplit_fps(RESNET, os.cpu_count() or 1, frames),
            "transfers": sum(t["bytes"] for t in result.manifest["transfers"]),
        })
    return rows


class _NoKernel:
    """A stage that computes nothing, so the frame loop's time is all communication and bookkeeping."""

    def bind(self, parity: int, inputs: dict, outputs: dict) -> None:
        pass

    def run(self, parity: int) -> None:
        pass


def hop_rank() -> None:
    """Under `mpirun -np 2`: time one tensor stream through the frame loop and through bare Send/Recv."""
    from mpi4py import MPI

    from edgec.runtime.pipeline import FrameLoop, Link, TensorSpec

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    results = []
    for size in SIZES:
        spec = TensorSpec((size // 4,), np.dtype(np.float32))
        link = Link("t", 1 - rank, 0, spec)
        count = max(20, min(2000, (256 << 20) // size))
        if rank == 0:
            loop = FrameLoop(comm, [], [link], {}, {"t": spec}, _NoKernel(), tag_stride=1)
        else:
            loop = FrameLoop(comm, [link], [], {}, {}, _NoKernel(), tag_stride=1)
        buf = np.ones(size // 4, np.float32)
        best = {"runtime": np.inf, "bare": np.inf}
        for _ in range(3):
            for mode in ("runtime", "bare"):
                comm.Barrier()
                start = time.perf_counter()
                if mode == "runtime":
                    loop.run(count)
                else:
                    for _ in range(count):
                        comm.Send([buf, MPI.BYTE], 1, 99) if rank == 0 else comm.Recv([buf, MPI.BYTE], 0, 99)
                comm.Barrier()
                best[mode] = min(best[mode], (time.perf_counter() - start) / count)
        loop.close()
        results.append({"bytes": size, "runtime_us": 1e6 * best["runtime"], "bare_us": 1e6 * best["bare"]})
    if rank == 0:
        print("HOP " + json.dumps(results), flush=True)


def hop_rows() -> list[dict]:
    from edgec.runtime.launcher import mpi_env

    cmd = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", sys.executable, __file__, "--hop-rank"]
    done = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=240)
    for line in done.stdout.splitlines():
        if line.startswith("HOP "):
            return json.loads(line[4:])
    raise SystemExit(f"hop benchmark failed:\n{done.stdout}\n{done.stderr}")


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy the CPUs are (from /proc/stat), so figures taken on a loaded machine say so."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-runtime-bench"))
    parser.add_argument("--hop-rank", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hop_rank:
        return hop_rank()
    args.dir.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    console = Console(width=150)
    busy = busy_fraction()
    if busy > 0.1:
        console.print(f"warning: the CPUs were {100 * busy:.0f}% busy before starting; other work skews the figures",
                      markup=False)
    started = time.perf_counter()
    rows = pipeline_rows(args.dir, args.frames)
    table = Table(title=f"ResNet-50 (light zoo), equal-MAC stages, 1 thread/stage, {args.frames} frames, {cores} cores")
    for col in ("stages", "ranks/cores", "stage compute ms", "frames/s", "unsplit frames/s", "split/unsplit",
                f"unsplit, {cores} thr", "efficiency", "p50 latency ms", "bytes/frame"):
        table.add_column(col, justify="right")
    for row in rows:
        r = row["report"]
        computes = "/".join(f"{s['compute_ms']:.0f}" for s in r["stages"])
        table.add_row(str(row["stages"]), f"{row['stages']}/{cores}" + (" (shared)" if row["stages"] > cores else ""),
                      computes, f"{r['throughput_fps']:.2f}", f"{row['unsplit_fps']:.2f} ({row['stages']} thr)",
                      f"{r['throughput_fps'] / row['unsplit_fps']:.2f}x", f"{row['unsplit_cores_fps']:.2f}",
                      f"{r['efficiency']:.2f}",
                      f"{r['latency_ms']['p50']:.0f}", _size(row["transfers"]) if row["transfers"] >= 1024 else str(row["transfers"]))
    console.print(table)
    hops = Table(title="per-hop overhead: runtime frame loop vs bare mpi4py Send/Recv (2 ranks, shared memory)")
    for col in ("tensor", "runtime µs/frame", "bare µs/msg", "ratio", "runtime GB/s"):
        hops.add_column(col, justify="right")
    for h in hop_rows():
        hops.add_row(_size(h["bytes"]), f"{h['runtime_us']:.1f}", f"{h['bare_us']:.1f}",
                     f"{h['runtime_us'] / h['bare_us']:.2f}x", f"{h['bytes'] / h['runtime_us'] / 1e3:.2f}")
    console.print(hops)
    console.print(f"{time.perf_counter() - started:.0f} s in all. Targets: efficiency ≥ 0.9 when ranks ≤ cores, hop ratio "
                  f"≤ 1.2x. With ranks > cores ({cores} here) stages time-share cores: their compute times stretch with "
                  "the sharing, so efficiency there measures pipeline overhead only; compare frames/s with the unsplit "
                  f"model on {cores} threads instead.", markup=False)


if __name__ == "__main__":
    main()
