"""Throughput and latency of a 3-device ResNet pipeline over emulated links, measured vs predicted; prints a table.

    python benchmarks/emulated_links.py [--rates 10Mbit,100Mbit,1Gbit] [--wires float,fp16,int8]
                                        [--repeats 3] [--model resnet18] [--width 1.0]

Needs root (`edgec run --emulate`). ResNet (benchmarks/zoo.py, random weights, 224x224) is cut
into 3 stages of about equal MACs (one thread each) on devices d0, d1, d2, chained by links
d0 <-> d1 <-> d2 of the given bandwidth (no latency unless --latency). For every wire format
(`quantize wire fp16|int8`; int8 is calibrated on the same random frames the run uses) the output
is compiled once; every (rate, repeat) brings up a fresh cluster, runs, and tears it down.

`--probe-latency` instead measures how late the ranks' latency emulation delivers a message.

Predicted: throughput = 1 / max(slowest stage's compute time, as this run measured it; slowest
link direction's boundary bytes × 8 / bandwidth) — the analytic model with measured compute;
latency = the sum of all stages' compute and all links' transfer times (+ link latency), an
unloaded frame's latency. The measured latency is under full load (a stage runs up to two
frames ahead), so it is above the unloaded prediction wherever a link is the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RATES = {"10Mbit": 10e6, "100Mbit": 100e6, "1Gbit": 1e9}


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def plan_text(model_path: Path, rate: str | None, latency_ms: float, wire: str, calib: Path | None) -> str:
    from runtime import equal_mac_plan

    text = f'model "{model_path}"\n' + equal_mac_plan(model_path, 3)
    if rate is not None:
        extra = f" latency {latency_ms:g}ms" if latency_ms > 0 else ""
        text += f"link d0 <-> d1 {{ bandwidth {rate}{extra} }}\nlink d1 <-> d2 {{ bandwidth {rate}{extra} }}\n"
    if wire == "fp16":
        text += "quantize wire fp16\n"
    elif wire == "int8":
        text += f'quantize wire int8 calibrate "{calib}"\n'
    return text


def predicted(report: dict, bandwidth: float, latency_s: float) -> tuple[float, float]:
    """(frames/s, unloaded latency ms): measured compute, analytic links."""
    compute = [s["compute_ms"] / 1e3 for s in report["stages"]]
    links = [row for row in report["emulation"]["links"] if row["boundary_bytes_per_frame"]]
    transfer = [8.0 * row["boundary_bytes_per_frame"] / bandwidth for row in links]
    fps = 1.0 / max(compute + transfer)
    latency = sum(compute) + sum(transfer) + latency_s * len(links)
    return fps, 1e3 * latency


def frames_for(per_frame_bytes: int, bandwidth: float, budget_s: float) -> int:
    return int(np.clip(budget_s / max(8.0 * per_frame_bytes / bandwidth, 0.02), 6, 50))


PROBE = """
import sys, time
import numpy as np
from mpi4py import MPI
from edgec.cluster.latency import DelayedStarts
comm, delay, n = MPI.COMM_WORLD, float(sys.argv[1]), 40
buf, stamp = np.zeros(16384, np.uint8), np.zeros(1)
if comm.Get_rank() == 0:
    req = comm.Ssend_init([buf, MPI.BYTE], 1, 7)
    delayed, late = DelayedStarts([[req]], [delay]), []
    for _ in range(n):
        comm.Barrier()
        posted = time.perf_counter()
        delayed.start([req])
        delayed.wait([req])
        comm.Recv(stamp, 1, 8)
        late.append(1e3 * (stamp[0] - posted - delay))
    delayed.close()
    print(f"{1e3 * delay:g} {min(late):.3f} {np.median(late):.3f} {np.percentile(late, 95):.3f}")
else:
    for _ in range(n):
        comm.Barrier()
        comm.Recv([buf, MPI.BYTE], 0, 7)
        stamp[0] = time.perf_counter()
        comm.Send(stamp, 0, 8)
"""


def probe_latency(console: Console) -> None:
    """How late `cluster.latency.DelayedStarts` delivers: 2 local ranks (one clock), 40 messages per delay."""
    from edgec.runtime.launcher import mpi_env

    table = Table(title="emulated latency: arrival after post minus the delay asked (16 KiB, 40 messages, local ranks)")
    for col in ("delay ms", "min ms", "median ms", "p95 ms"):
        table.add_column(col, justify="right")
    before = load()
    for delay in (0.0, 0.002, 0.01, 0.02):
        done = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", sys.executable, "-c", PROBE, str(delay)],
                              capture_output=True, text=True, env=mpi_env(), timeout=300)
        fields = done.stdout.split()
        if done.returncode != 0 or len(fields) != 4:
            sys.exit(f"probe failed: {done.stderr[-2000:]}")
        table.add_row(*fields)
    console.print(table)
    console.print(f"load average before: {before}; after: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-latency", action="store_true", help="Only measure how exactly the ranks delay "
                        "sends (no cluster, no root needed).")
    parser.add_argument("--rates", default="10Mbit,100Mbit,1Gbit")
    parser.add_argument("--wires", default="float,fp16,int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.0, help="Link latency in ms (default 0).")
    parser.add_argument("--budget", type=float, default=3.0, help="Seconds of measured frames per run (about).")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    if args.probe_latency:
        probe_latency(Console(width=170))
        return
    if os.geteuid() != 0:
        sys.exit("benchmarks/emulated_links.py needs root (it builds network namespaces)")

    import edgec
    from edgec.cluster.emulated_run import run_emulated
    from edgec.runtime.outputs import CompiledOutput
    from zoo import cached

    work = args.dir or Path(tempfile.mkdtemp(prefix="edgec-emulated-links-"))
    work.mkdir(parents=True, exist_ok=True)
    model = cached(args.model, width=args.width).path
    rng = np.random.default_rng(0)
    frames_in = rng.standard_normal((4, 1, 3, 224, 224)).astype(np.float32)
    calib = work / "calib"
    calib.mkdir(exist_ok=True)
    np.save(calib / "input.npy", frames_in)
    console = Console(width=170)
    load_before = load()
    table = Table(title=f"{args.model} (width {args.width:g}) on 3 emulated devices, d0 <-> d1 <-> d2; "
                        f"{args.repeats} repeats (min / median)")
    for col in ("wire", "link rate", "busiest link/frame", "frames", "measured fps", "predicted fps",
                "p50 latency ms", "predicted ms", "link util", "wire overhead"):
        table.add_column(col, justify="left" if col in ("wire", "link rate") else "right")
    failures: list[str] = []
    for wire in args.wires.split(","):
        out = work / f"out-{wire}"
        plan = work / f"compile-{wire}.edge"
        plan.write_text(plan_text(model, None, 0.0, wire, calib))
        try:
            edgec.compile(model, plan, out)
        except edgec.EdgecError as exc:
            failures.append(f"{wire}: the compile failed: {exc.message.splitlines()[0]}")
            continue
        compiled = CompiledOutput.open(out)
        name = compiled.manifest.model.inputs[0].name
        feeds = {name: frames_in}
        everything = sum(t.nbytes for t in compiled.manifest.transfers)
        for rate in args.rates.split(","):
            bandwidth = RATES[rate]
            emulate = work / f"links-{wire}-{rate}.edge"
            emulate.write_text(plan_text(model, rate, args.latency, wire, calib))
            frames = frames_for(everything, bandwidth, args.budget)
            rows = []
            for _ in range(args.repeats):
                result = run_emulated(out, feeds, emulate=str(emulate), frames=frames, warmup=2, timeout=900)
                report = result.report
                links = [r for r in report["emulation"]["links"] if r["boundary_bytes_per_frame"]]
                per_frame = max(r["boundary_bytes_per_frame"] for r in links)
                rows.append({"fps": report["throughput_fps"], "p50": report["latency_ms"]["p50"],
                             "pred": predicted(report, bandwidth, args.latency / 1e3),
                             "util": max(r["utilization"] for r in links),
                             "overhead": statistics.median(r["wire_overhead"] for r in links)})
            fps = sorted(r["fps"] for r in rows)
            lat = sorted(r["p50"] for r in rows)
            table.add_row(wire, rate, f"{per_frame / 1024:.0f} KiB", str(frames),
                          f"{fps[-1]:.2f} / {statistics.median(fps):.2f}",
                          f"{statistics.median(r['pred'][0] for r in rows):.2f}",
                          f"{lat[0]:.0f} / {statistics.median(lat):.0f}",
                          f"{statistics.median(r['pred'][1] for r in rows):.0f}",
                          f"{100 * statistics.median(r['util'] for r in rows):.0f}%",
                          f"{100 * statistics.median(r['overhead'] for r in rows):.1f}%")
            console.print(f"[dim]{wire} {rate}: done[/]")
    console.print(table)
    for failure in failures:
        console.print(failure, highlight=False, markup=False)
    console.print(f"measured fps: best / median of the repeats; latency: lowest / median p50. load average "
                  f"before: {load_before}; after: {load()} (other jobs share this machine's {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
