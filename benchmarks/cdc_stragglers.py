"""Benchmark cdc against a straggler: latency and throughput of a 4-part FC and a 4-part conv layer, uncoded and coded.

    python benchmarks/cdc_stragglers.py [--repeats 3] [--frames 300] [--dir /tmp/edgec-cdc-bench]

Each layer (after a Relu on the input rank, so the part ranks only compute their parts) is split
by output into 4 parts on 4 devices and merged on the input's device; `R=1` and `R=2` add that
many parity devices (`cdc ... parity R`). 2x replication of every part is absent: the plan
language cannot place one part on two devices, so there is nothing to run.

The straggler is 5x: `--straggler random:DELAY` with DELAY = 4 x the mean compute time of a
part rank measured in the uncoded run without straggler (one random part rank sleeps that long
in each frame). Latency is the report's end-to-end frame latency (first rank starting the
frame to the merge computing its output) at an offered load (`--rate`) of one frame every 6
part-compute times (a straggler has finished before the next frame), or 40% of the uncoded
run's full-load throughput when that is lower (a loaded machine: no queue builds up at the
input, so the figures measure waiting for parts, not a backlog); throughput is measured
at full load (frames as fast as the pipeline takes them), where every part rank still computes
every frame, so a straggler costs throughput whatever the code. Every figure is the min / median
over the repeats; the load average is printed with the table.
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

DEVICES = "".join(f"device d{i} {{ arch x86_64 cores 1 }}\n" for i in range(7))


def layer_model(kind: str) -> onnx.ModelProto:
    """FC: [16, 2048] -> Gemm -> [16, 4096]; conv: [1, 64, 56, 56] -> 3x3 Conv -> [1, 128, 56, 56]; a Relu before
    each. Sized so a part computes for milliseconds, more than the run time's own jitter on a loaded machine."""
    rng = np.random.default_rng(0)
    if kind == "fc":
        shape, weights = [16, 2048], [rng.standard_normal((4096, 2048)) / 45, rng.standard_normal(4096)]
        layer = helper.make_node("Gemm", ["pre", "w", "b"], ["y"], name="layer", transB=1)
        out = [16, 4096]
    else:
        shape, weights = [1, 64, 56, 56], [rng.standard_normal((128, 64, 3, 3)) / 24, rng.standard_normal(128)]
        layer = helper.make_node("Conv", ["pre", "w", "b"], ["y"], name="layer", pads=[1, 1, 1, 1])
        out = [1, 128, 56, 56]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["pre"], name="pre"), layer], kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [numpy_helper.from_array(w.astype(np.float32), n) for w, n in zip(weights, ("w", "b"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def plan(parity: int) -> str:
    text = DEVICES + "place * on d0\nsplit layer by output into 4 on d1, d2, d3, d4\n"
    if parity:
        text += f"cdc layer parity {parity} on " + ", ".join(f"d{5 + j}" for j in range(parity)) + "\n"
    return text


def one_run(out: Path, feeds: dict, frames: int, **options) -> dict:
    from edgec.runtime.launcher import run

    report = run(out, feeds, frames=frames, warmup=5, **options).report
    parts = [s["compute_ms"] for s in report["stages"] if s["rank"] in (1, 2, 3, 4)]
    report["part_compute_s"] = float(np.mean(parts)) / 1e3
    return report


def med(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-cdc-bench"))
    parser.add_argument("--layers", nargs="*", default=["fc", "conv"], choices=["fc", "conv"])
    args = parser.parse_args()
    import edgec
    from edgec.runtime.outputs import CompiledOutput

    print(machine())
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    loads = [os.getloadavg()[0]]
    for kind in args.layers:
        model = layer_model(kind)
        outs = {}
        for parity in (0, 1, 2):
            outs[parity] = args.dir / f"{kind}-r{parity}"
            edgec.compile(model, plan(parity), outs[parity], force=True)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
        base = one_run(outs[0], feeds, 100)
        t = base["part_compute_s"]
        delay, rate = 4 * t, min(1 / (6 * t), 0.4 * base["throughput_fps"])
        figures: dict[int, dict[str, list[float]]] = {p: {} for p in outs}
        for _ in range(args.repeats):
            for parity, out in outs.items():
                runs = {
                    "p50": one_run(out, feeds, args.frames, rate=rate),
                    "p50s": one_run(out, feeds, args.frames, rate=rate, stragglers=(f"random:{delay!r}",)),
                    "fps": one_run(out, feeds, args.frames),
                    "fpss": one_run(out, feeds, args.frames, stragglers=(f"random:{delay!r}",)),
                }
                got = figures[parity]
                for key, quantile in (("p50", "p50"), ("p99", "p99")):
                    got.setdefault(key, []).append(runs["p50"]["latency_ms"][quantile])
                    got.setdefault(key + "s", []).append(runs["p50s"]["latency_ms"][quantile])
                got.setdefault("fps", []).append(runs["fps"]["throughput_fps"])
                got.setdefault("fpss", []).append(runs["fpss"]["throughput_fps"])
                got.setdefault("rec", []).append(runs["p50s"].get("cdc", {}).get("frames_recovered", 0))
                got.setdefault("err", []).append(runs["p50s"].get("cdc", {}).get("recovery_error") or 0.0)
                loads.append(os.getloadavg()[0])
        for parity, got in figures.items():
            devices = len({s.device for s in CompiledOutput.open(outs[parity]).manifest.stages})
            name = "uncoded" if parity == 0 else f"CDC R={parity}"
            ratio = [s / n for s, n in zip(got["p99s"], got["p99"])]
            rows.append([f"{kind} ({name})", devices, med(got["p50"]), med(got["p99"]), med(got["p50s"]),
                         med(got["p99s"]), med(ratio), med(got["fps"]), med(got["fpss"]),
                         f"{int(statistics.median(got['rec']))} of {args.frames}", f"{max(got['err']):.1e}"])
        rows.append([f"{kind} (2x replication)", "absent: a plan cannot place one part on two devices", *[""] * 9])
        print(f"{kind}: part compute {1e3 * t:.2f} ms, straggler delay {1e3 * delay:.2f} ms (5x), uncoded "
              f"full load {base['throughput_fps']:.0f} frames/s, offered load {rate:.0f} frames/s", flush=True)
    print()
    print(markdown(["layer (code)", "devices", "p50 ms", "p99 ms", "p50 ms straggler", "p99 ms straggler",
                    "p99 straggler / p99", "frames/s", "frames/s straggler", "frames recovered", "recovery error"],
                   rows))
    print(f"\n(min / median over {args.repeats} repeats of {args.frames} frames; latency at the offered load, "
          f"frames/s at full load; load average 1 min from {min(loads):.1f} to {max(loads):.1f} during the runs, "
          "other work shared the machine)")


if __name__ == "__main__":
    main()
