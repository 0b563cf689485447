"""Benchmark `edgec run --rebalance`: a 4-device pipeline of a ResNet whose device 1 computes 3x slower than the others.

    python benchmarks/rebalance.py [--model resnet18] [--width 0.5] [--frames 600] [--base 4] [--factor 3]
        [--window 32] [--dir /tmp/edgec-rebalance-bench]

Four plans, all run on real mpirun with the same slowdown (`--slow`):

- **original**: the exact DP split for four equal devices (what the explorer gives when it does not know
  that one device is slow);
- **replicated**: the original plan with the slow device's stage replicated on a fifth device
  (`replicate … on d1, d4`), frames dealt round-robin;
- **rebalanced online**: `edgec run --rebalance` from the original plan: the frames/s after its last switch
  (from a stage's worth of frames after the switch to the end), the time from the start to the switch, the
  background compile, and the pause at the switch;
- **best offline**: the DP split for the speeds measured in the original run (each stage's mean compute ÷ its
  profiled time), and the DP split for the speeds the `--slow` factors give (profile × factor), each compiled
  and run from the start; "of best offline" is relative to the faster of the two.

Why every device is slowed (`--base`, default 4x) and device 1 by a further `--factor` (3x): this machine has
2 cores shared by 4-5 ranks. A `--slow` rank sleeps (FACTOR − 1) × its kernel time after each kernel, and a
sleep takes no core, so with every device 4x slower the ranks' real compute needs well under the 2 cores
and the figures show the pipeline, not the contention. Device 1 is then 3x slower than the others, as asked.
Each figure is one run (the table says so); the load average is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import machine, markdown  # noqa: E402

DEVICES = "".join(f"device d{i} {{ arch x86_64 cores 1 }}\n" for i in range(4))
SLOW_DEVICE = 1


def slow_specs(out: Path, base: float, factor: float) -> tuple[str, ...]:
    from edgec.runtime.replica_frames import rank_roles

    return tuple(f"{role.rank}:{base * (factor if role.device == f'd{SLOW_DEVICE}' else 1.0)!r}"
                 for role in rank_roles(out))


def run_plain(out: Path, frames: int, base: float, factor: float) -> dict:
    from edgec.runtime.launcher import run
    from edgec.runtime.outputs import CompiledOutput, random_inputs

    feeds = random_inputs(CompiledOutput.open(out).manifest, 0)
    return run(out, feeds, frames=frames, warmup=5, slow=slow_specs(out, base, factor), workdir=out.parent).report


def nodes_per_stage(stages) -> str:
    return "/".join(str(s.last - s.first + 1) for s in stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--base", type=float, default=4.0)
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-rebalance-bench"))
    args = parser.parse_args()

    import edgec
    from edgec.explorer.profile import profile
    from edgec.explorer.session import load
    from edgec.runtime.rebalance import Replanner, Stage
    from edgec.runtime.rebalance_run import run_rebalanced
    from edgec.runtime.outputs import CompiledOutput, random_inputs
    from zoo import cached

    args.dir.mkdir(parents=True, exist_ok=True)
    model = cached(args.model, width=args.width).path
    loaded = load(model, DEVICES)
    profile_path = args.dir / "profile-unfused.json"
    if not profile_path.is_file():
        profile_path.write_text(json.dumps(profile(loaded.model, [1], repeats=5, with_mpi=False, source=str(model),
                                                   fused=False)))
    planner = Replanner(loaded, json.loads(profile_path.read_text()))
    n = len(loaded.names)
    bounds = np.linspace(0, n, 5).astype(int)
    even = [Stage(int(a), int(b) - 1, f"d{k}", "cpu", 1) for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    equal = planner.replan(even, [planner.predicted(s) for s in even])  # the optimum for four equal devices
    original = equal.stages if equal.gain > 0 else tuple(even)

    def compile_plan(name: str, stages, extra: str = "", spare: bool = False) -> Path:
        text = planner.plan_text(stages, [name])
        if spare:
            text = text.replace("\nplace ", "\ndevice d4 { arch x86_64 cores 1 }\nplace ", 1)
        out = args.dir / name
        edgec.compile(model, text + extra, out, force=True)
        return out

    rows, notes = [], []
    out = compile_plan("original", original)
    plain = run_plain(out, args.frames, args.base, args.factor)
    measured = [row["compute_ms"] / 1e3 for row in plain["stages"]]
    rows.append(("original", nodes_per_stage(original), plain["throughput_fps"], "", ""))

    slow_stage = original[SLOW_DEVICE]
    selector = f'"{loaded.names[slow_stage.first]}" .. "{loaded.names[slow_stage.last]}"'
    replicated = compile_plan("replicated", original, f"replicate {selector} on d{SLOW_DEVICE}, d4\n", spare=True)
    rep = run_plain(replicated, args.frames, args.base, args.factor)
    rows.append(("replicated (d1 + d4)", nodes_per_stage(original), rep["throughput_fps"], "", ""))

    feeds = random_inputs(CompiledOutput.open(out).manifest, 0)
    online = run_rebalanced(out, feeds, frames=args.frames, warmup=5, window=args.window,
                            slow=slow_specs(out, args.base, args.factor), profile=profile_path,
                            workdir=args.dir).report
    section = online["rebalance"]
    switches = section["switches"]
    if switches:
        last = switches[-1]
        new = [Stage(loaded.names.index(s["first"]), loaded.names.index(s["last"]), s["device"], "cpu", 1)
               for s in last["new_stages"]]
        converge = (f"{len(switches)} switch(es), the last at frame {last['frame']}, {last['time_s']:.1f} s after "
                    "the start")
        rows.append(("rebalanced online (after its last switch)", nodes_per_stage(new), last["steady_fps"],
                     f"{last['before_fps']:.1f} → {last['after_fps']:.1f}", converge))
        for k, s in enumerate(switches, start=1):
            split = "/".join(str(x["nodes"]) for x in s["new_stages"])
            notes.append(f"switch {k}: frame {s['frame']} at {s['time_s']:.2f} s, to {split}, measured stage ms "
                         f"{s.get('measured_ms')}, predicted gain {100 * s.get('predicted_gain', 0):.0f} %, compile "
                         f"{s.get('compile_s', float('nan')):.1f} s, window before {s['before_fps']:.1f} f/s → after "
                         f"{s['after_fps']:.1f} f/s, steady {s['steady_fps']:.1f} f/s, pause "
                         f"{1e3 * s['pause_s']:.0f} ms")
        if section.get("note"):
            notes.append(section["note"])
    else:
        rows.append(("rebalanced online", "no switch", online["throughput_fps"], "", section.get("note") or ""))

    best = planner.replan(list(original), measured)
    offline_out = compile_plan("offline", best.stages)
    offline = run_plain(offline_out, args.frames, args.base, args.factor)
    rows.append(("best offline (measured speeds)", nodes_per_stage(best.stages), offline["throughput_fps"], "", ""))

    given = [args.base * (args.factor if k == SLOW_DEVICE else 1.0) for k in range(4)]
    known = planner.best_split(list(original), given, 0.0)
    known_out = compile_plan("offline-given", known.stages)
    given_run = run_plain(known_out, args.frames, args.base, args.factor)
    rows.append(("best offline (the --slow factors)", nodes_per_stage(known.stages), given_run["throughput_fps"],
                 "", ""))

    reference = max(offline["throughput_fps"], given_run["throughput_fps"])
    table = [(name, split, f"{fps:.1f}", f"{100 * fps / reference:.0f} %", window, note)
             for name, split, fps, window, note in rows]
    print(f"{args.model} width {args.width}, {n} nodes; --slow: every device {args.base:g}x, d1 a further "
          f"{args.factor:g}x; {args.frames} frames per run, window {args.window}, one run each")
    print(markdown(["plan", "nodes per stage", "frames/s", "of best offline", "window before → after", "converge"],
                   table))
    print(f"speed factors measured in the original run: {[round(float(f), 2) for f in best.factors]}")
    print(machine())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
