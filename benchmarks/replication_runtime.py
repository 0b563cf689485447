"""Benchmark `replicate` on real mpirun: a 3-stage pipeline whose middle stage is the bottleneck, without and with
that stage replicated on a spare device.

    python benchmarks/replication_runtime.py [--repeats 3] [--frames 60] [--delay-ms 60] [--dir /tmp/edgec-rep-bench]

Two kinds of bottleneck, both on the same model (a 1x1 conv on the input rank, six 3x3 convs
of 64 channels at 56x56 in the middle stage, a 1x1 conv on the output rank):

- **compute**: the middle stage's own convolutions, one thread per rank. Two replicas then
  compute at the same time, so their gain is bounded by the free cores: on a machine with
  2 cores shared with other processes it cannot reach 2x.
- **slow device**: every rank of the middle stage also sleeps DELAY per frame before its sends
  (`--straggler RANK:DELAY`, a device that is that much slower); sleeping takes no core, so this
  measures what dealing frames round-robin gives when the replicas' devices are really separate.

Throughput is the report's full-load figure (frames as fast as the pipeline takes them). The
gain is replicated / single-replica throughput; the ideal is r = 2 when the bottleneck ÷ 2 still
exceeds every other stage's time, which the printed per-stage compute shows. The capacity column is
what round-robin allows given the replicas' measured frame times (r ÷ the slowest): when it is
well under 2x the single plan's, the replicas themselves slowed down (shared cores), and the
gain lost there is not the dealing's. Every figure is the
min / median over the repeats; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import machine, markdown  # noqa: E402

DEVICES = "".join(f"device d{i} {{ arch x86_64 cores 1 }}\n" for i in range(4))
PLACES = "place head on d0\nplace c1 .. r6 on d1\nplace * on d2\n"
PLANS = {"single": PLACES, "replicated x2": PLACES + "replicate c1 .. r6 on d1, d3\n"}


def bottleneck_model() -> onnx.ModelProto:
    """x [1, 8, 56, 56] → head (1x1 conv to 64) → c1 … c6 (3x3 convs 64 → 64, Relu) → tail (1x1 conv to 8)."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"

    def conv(name: str, src: str, cin: int, cout: int, k: int) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}_w"))
        nodes.append(helper.make_node("Conv", [src, f"{name}_w"], [f"{name}_y"], name=name, pads=[k // 2] * 4))
        return f"{name}_y"

    prev = conv("head", prev, 8, 64, 1)
    for i in range(1, 7):
        y = conv(f"c{i}", prev, 64, 64, 3)
        nodes.append(helper.make_node("Relu", [y], [f"r{i}"], name=f"r{i}"))
        prev = f"r{i}"
    out = conv("tail", prev, 64, 8, 1)
    shape = [1, 8, 56, 56]
    graph = helper.make_graph(nodes, "bottleneck", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def bottleneck_ranks(out: Path) -> list[int]:
    from edgec.runtime.replica_frames import rank_roles

    return [role.rank for role in rank_roles(out) if role.stage == 1]


def measure(out: Path, frames: int, delay_s: float) -> dict:
    from edgec.runtime.launcher import run
    from edgec.runtime.outputs import CompiledOutput, random_inputs

    feeds = random_inputs(CompiledOutput.open(out).manifest, 0)
    stragglers = tuple(f"{rank}:{delay_s!r}" for rank in bottleneck_ranks(out)) if delay_s > 0 else ()
    report = run(out, feeds, frames=frames, warmup=5, stragglers=stragglers).report
    compute = {s["rank"]: s["compute_ms"] for s in report["stages"]}
    effective = report["replicas"][0]["effective_ms"] if report.get("replicas") else compute[1]
    return {"fps": report["throughput_fps"], "compute": compute, "capacity": 1e3 / effective}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--delay-ms", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-rep-bench"))
    args = parser.parse_args()
    import edgec
    from edgec.dsl import parse_plan

    args.dir.mkdir(parents=True, exist_ok=True)
    model = args.dir / "bottleneck.onnx"
    onnx.save(bottleneck_model(), model)
    outs = {}
    for name, body in PLANS.items():
        outs[name] = args.dir / name.replace(" ", "-")
        edgec.compile(model, parse_plan(DEVICES + body, "plan.edge"), outs[name], force=True)
    rows, loads = [], [os.getloadavg()[0]]
    for kind, delay in (("compute", 0.0), ("slow device", args.delay_ms / 1e3)):
        runs = {name: [measure(out, args.frames, delay) for _ in range(args.repeats)] for name, out in outs.items()}
        loads.append(os.getloadavg()[0])
        single = [r["fps"] for r in runs["single"]]
        for name, results in runs.items():
            fps = [r["fps"] for r in results]
            compute = {rank: statistics.median(r["compute"][rank] for r in results) for rank in results[0]["compute"]}
            gain = "" if name == "single" else (f"{statistics.median(fps) / statistics.median(single):.2f}x "
                                                f"(min/min {min(fps) / min(single):.2f}x, ideal 2x)")
            capacity = statistics.median(r["capacity"] for r in results)
            rows.append([kind, name, f"{min(fps):.1f} / {statistics.median(fps):.1f}", gain, f"{capacity:.1f}",
                         ", ".join(f"r{rank} {ms:.1f}" for rank, ms in sorted(compute.items()))])
    print(machine())
    print(f"load average (1 min) before/after each kind: {', '.join(f'{x:.2f}' for x in loads)}; "
          f"{args.repeats} repeats of {args.frames} frames (+5 warm-up), delay {args.delay_ms:g} ms\n")
    print(markdown(["bottleneck", "plan", "frames/s min / median", "gain (median/median)",
                    "stage capacity fps (r ÷ slowest replica's frame time)",
                    "compute ms per rank, delay included (median; r3 = 2nd replica)"], rows))


if __name__ == "__main__":
    main()
