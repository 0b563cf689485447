"""Benchmark a killed part rank under ULFM: a 4-part FC and a 4-part conv layer with one parity, one part SIGKILLed.

    python benchmarks/cdc_kill.py [--repeats 3] [--frames 200] [--kill-at 50] [--dir /tmp/edgec-cdc-kill]

The layers and plans are `cdc_stragglers.py`'s (a Relu on the input rank, the layer split by output in
4 parts on 4 devices and merged on the input's device, R = 1 parity device). Part rank 2 kills itself
(`--kill 2@F`, F = warm-up + KILL_AT, so measured frame KILL_AT) and the merge rebuilds its part from
parity from then on. Per layer: frames lost, the frame latency (the report's: first rank starting the
frame to the merge computing its output) p50 / p99 over the measured frames before and after the kill,
the detection time (kill to the merge's receive failing with MPI_ERR_PROC_FAILED), and the max relative
error of every measured frame's output against the unsplit model in onnxruntime (max |y - ref| / max |ref|).
Latency is at an offered load (`--rate`) of 40% of the same output's full-load throughput without a
kill, so no queue builds up at the input. Min / median over the repeats; the load average is printed.
Needs `edgec fetch-runtime ulfm`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdc_stragglers import layer_model, plan  # noqa: E402
from tables import machine, markdown  # noqa: E402

WARMUP = 5
KILLED = 2


def med(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--kill-at", type=int, default=50, help="measured frame at which part rank 2 is killed")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-cdc-kill"))
    parser.add_argument("--layers", nargs="*", default=["fc", "conv"], choices=["fc", "conv"])
    args = parser.parse_args()
    import edgec
    from edgec.runtime.launcher import run
    from edgec.runtime.ulfm_runtime import ulfm_dir

    from edgec.compiler.diagnostics import UsageError

    try:
        ulfm_dir()
    except UsageError as exc:
        sys.exit(f"cdc_kill: {exc.message}; {exc.hint}")
    print(machine())
    args.dir.mkdir(parents=True, exist_ok=True)
    rows, loads, libraries = [], [os.getloadavg()[0]], set()
    for kind in args.layers:
        model = layer_model(kind)
        out = args.dir / f"{kind}-r1"
        edgec.compile(model, plan(1), out, force=True)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        full = run(out, {"x": x}, frames=args.frames, warmup=WARMUP).report["throughput_fps"]
        rate = 0.4 * full
        got: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            result = run(out, {"x": x}, frames=args.frames, warmup=WARMUP, keep_outputs=True, rate=rate,
                         kills=(f"{KILLED}@{WARMUP + args.kill_at}",))
            report = result.report
            libraries.add(report["mpi_library"].split(",")[0])
            (lost,) = report["lost_ranks"]
            around = report["latency_around_loss_ms"]
            error = float(np.max(np.abs(result.outputs["y"] - reference)) / np.max(np.abs(reference)))
            for key, value in (("lost", report["frames_lost"]), ("p50b", around["before"]["p50"]),
                               ("p99b", around["before"]["p99"]), ("p50a", around["after"]["p50"]),
                               ("p99a", around["after"]["p99"]), ("detect", lost["detected_after_ms"]),
                               ("rebuilt", report["cdc"]["parts_recovered_by_rank"].get(str(KILLED), 0)),
                               ("err", error)):
                got.setdefault(key, []).append(value)
            loads.append(os.getloadavg()[0])
            del result
        rows.append([f"{kind} (4 parts, R=1)", f"{max(got['lost']):.0f}", med(got["p50b"]), med(got["p99b"]),
                     med(got["p50a"]), med(got["p99a"]), med(got["detect"], 1),
                     f"{int(statistics.median(got['rebuilt']))} ({args.frames - args.kill_at} after the kill)",
                     f"{max(got['err']):.1e}"])
        print(f"{kind}: full load without a kill {full:.0f} frames/s, offered load {rate:.0f} frames/s", flush=True)
    print()
    print(markdown(["layer", "frames lost", "p50 ms before", "p99 ms before", "p50 ms after", "p99 ms after",
                    "detection ms", f"frames part {KILLED} rebuilt", "max rel. error"], rows))
    print(f"\n(min / median over {args.repeats} repeats of {args.frames} frames, part rank {KILLED} killed at measured "
          f"frame {args.kill_at}; {', '.join(sorted(libraries))}; load average 1 min from {min(loads):.1f} to "
          f"{max(loads):.1f} during the runs)")


if __name__ == "__main__":
    main()
