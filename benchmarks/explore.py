"""The explorer on real-size models: how close NSGA-II gets to the chain DP, how fast, and how both grow.

    python benchmarks/explore.py [--quick] [--budget 10] [--measure 5] [--png FILE] [--cache DIR]

Platform: 8 devices of 3 kinds (2 × "big": 2 cores, 100 %, 4 GiB; 3 × "mid": 2 cores, 50 %,
2 GiB; 3 × "small": 1 core, 30 %, 1 GiB; power figures per kind) and a full mesh of links drawn
(seeded) from 10 Mbit, 100 Mbit and 1 Gbit with 0.5–5 ms latency. Compute times are one
`edgec profile` of each model on this machine (cached beside the zoo's models), scaled by the
kinds' speeds. Tables:

1. per model: the chain DP's optimum and time, NSGA-II's best throughput with and without the
   DP seed and its gap, the time it first reached its best, and the hypervolume of its front
   against random search with the same budget (objectives normalized over both fronts);
   "DAG": the DP's plan re-costed with the full model (skip tensors on their real links) next
   to the search's best.
2. growth: DP time (min/median of 3) over 8, 16, 32, 64 devices and 24…200 split points, against
   its stated O(U²·D²) (ns per U²·D² step), and the unseeded GA's gap within a fixed budget.
3. analytic vs measured (`--measure N`): the N fastest plans of ResNet-101 on two 1-core devices
   of this machine (profiled afresh just before), compiled and run with `edgec run` (20 frames,
   2 runs); relative error per plan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import zoo  # noqa: E402
from tables import machine, markdown  # noqa: E402

from edgec.explorer.chain_dp import chain_optimum  # noqa: E402
from edgec.explorer.search import explore, objective_values, random_search  # noqa: E402
from edgec.explorer.session import build_model, load, run_profile  # noqa: E402

MODELS = ("vgg19", "resnet101", "densenet121")
KINDS = {"big": (2, 100, "4GiB", "10W", "3W"), "mid": (2, 50, "2GiB", "5W", "1.5W"), "small": (1, 30, "1GiB", "3W", "0.8W")}
MIX = ("big", "mid", "small", "mid", "small", "big", "mid", "small")
OBJECTIVES = ("throughput", "latency", "memory", "energy")


def platform_text(devices: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(devices):
        cores, speed, mem, active, idle = KINDS[MIX[i % len(MIX)]]
        lines.append(f"device d{i} {{ cores {cores} speed {speed}% mem {mem} power_active {active} power_idle {idle} }}")
    for i in range(devices):
        for j in range(i + 1, devices):
            bw = rng.choice(["10Mbit", "100Mbit", "1Gbit"])
            lines.append(f"link d{i} <-> d{j} {{ bandwidth {bw} latency {int(rng.integers(500, 5001))}us }}")
    return "\n".join(lines) + "\n"


def profile_for(name: str, cache: Path, loaded) -> dict:
    path = cache / f"explore-profile-{name}.v1.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"profiling {name} (once; cached in {path})", file=sys.stderr)
    data = run_profile(loaded, None, repeats=3, progress=lambda m: print("  " + m, file=sys.stderr))
    path.write_text(json.dumps(data))
    return data


def hypervolumes(fronts: list[list], objectives) -> list[float]:
    from pymoo.indicators.hv import HV

    points = [np.asarray([objective_values(c.cost, objectives) for c in f]) for f in fronts]
    every = np.vstack(points)
    lo, hi = every.min(axis=0), every.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    hv = HV(ref_point=np.full(len(objectives), 1.1))
    return [float(hv((p - lo) / span)) for p in points]


def _reached(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.2f} s"


def fmt_fps(x: float) -> str:
    return f"{x:.3g}"


def table_models(args, work: Path) -> None:
    rows = []
    for name in args.models:
        m = zoo.cached(name, args.cache)
        plan = work / f"{name}-8.edge"
        plan.write_text(platform_text(8))
        loaded = load(m.path, plan)
        profile = profile_for(name, args.cache, loaded)
        facts, model = build_model(loaded, profile, args.points)
        t0 = time.perf_counter()
        dp = chain_optimum(model)
        dp_s = time.perf_counter() - t0
        seeded = explore(model, OBJECTIVES, budget_s=args.budget, seed=1)
        unseeded = explore(model, OBJECTIVES, budget_s=args.budget, seed=2, use_dp=False)
        rand = random_search(model, OBJECTIVES, args.budget, seed=3)
        hv_ga, hv_rand = hypervolumes([unseeded.front, rand], OBJECTIVES)
        best_s = min(c.cost.period for c in seeded.front)
        best_u = min(c.cost.period for c in unseeded.front)
        best_r = min(c.cost.period for c in rand)
        dag = model.evaluate(dp.plan).period
        fp16 = chain_optimum(model, wires=("float32", "fp16"))
        rows.append([name, f"{facts.size} / {model.units.count - 1}", fmt_fps(1 / dp.period), f"{1e3 * dp_s:.0f} ms",
                     fmt_fps(1 / best_s), f"{100 * (best_s - dp.period) / dp.period:+.2f} %",
                     fmt_fps(1 / best_u), f"{100 * (best_u - dp.period) / dp.period:+.2f} %",
                     _reached(unseeded.time_to(1.01 * dp.period)), f"{unseeded.evaluations:,}", fmt_fps(1 / best_r),
                     f"{hv_ga:.3f} / {hv_rand:.3f}", f"{fmt_fps(1 / dag)} → {fmt_fps(1 / best_s)}",
                     fmt_fps(1 / fp16.period)])
        if args.png and name == args.models[0]:
            from edgec.explorer.pareto_plot import draw_front
            from edgec.explorer.session import row

            chosen = sorted(seeded.front, key=lambda c: c.cost.period)[:12]
            draw_front(Path(args.png), [row(f"plan-{i:02d}.edge", c.cost, c.plan, loaded.platform)
                                        for i, c in enumerate(chosen, 1)], 1 / dp.period,
                       f"{name}, 8 devices of 3 kinds: front of {len(seeded.front)} plans ({args.budget:g} s)")
    print(f"\n### DP optimum vs NSGA-II, 8 devices of 3 kinds, {args.points} split points, budget {args.budget:g} s, "
          f"objectives {', '.join(OBJECTIVES)}\n")
    print("target: best throughput within 1 % of the DP optimum on chains, found in ≤ 30 s\n")
    print(markdown(["model", "nodes / split points", "DP optimum fps", "DP time", "GA+DP seed fps", "gap",
                    "GA alone fps", "gap", "GA alone: within 1 % of DP after", "evaluations", "random fps",
                    "hypervolume GA / random", "DAG: DP plan re-costed → best", "DP fps, fp16 wire allowed"], rows))


def table_growth(args, work: Path) -> None:
    name = "resnet101"
    m = zoo.cached(name, args.cache)
    rows = []
    for devices in args.devices:
        plan = work / f"{name}-{devices}.edge"
        plan.write_text(platform_text(devices))
        loaded = load(m.path, plan)
        profile = profile_for(name, args.cache, loaded)
        for points in args.split_points:
            facts, model = build_model(loaded, profile, points)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                dp = chain_optimum(model)
                times.append(time.perf_counter() - t0)
            u, d = model.units.count, devices
            ga = explore(model, ("throughput", "latency"), budget_s=args.growth_budget, seed=4, use_dp=False)
            best = min(c.cost.period for c in ga.front)
            rows.append([devices, u - 1, f"{1e3 * min(times):.1f} / {1e3 * float(np.median(times)):.1f} ms",
                         f"{1e9 * min(times) / (u * u * d * d):.2f}", fmt_fps(1 / dp.period), fmt_fps(1 / best),
                         f"{100 * (best - dp.period) / dp.period:+.2f} %", _reached(ga.time_to(1.01 * dp.period)),
                         f"{ga.evaluations:,}"])
    print(f"\n### Growth on {name}: the DP (O(U²·D²), stated) and the GA (throughput, latency; "
          f"{args.growth_budget:g} s, no DP seed)\n")
    print(markdown(["devices", "split points", "DP time min / median", "DP ns per U²·D²", "DP fps", "GA fps",
                    "GA gap", "GA within 1 % after", "GA evaluations"], rows))


def table_measured(args, work: Path) -> None:
    from edgec.explorer.measure import measure_plan
    from edgec.explorer.plan_text import plan_text

    name = "resnet101"
    m = zoo.cached(name, args.cache)
    plan = work / "measure.edge"
    plan.write_text("device a { cores 1 }\ndevice b { cores 1 }\n")
    loaded = load(m.path, plan)
    profile = run_profile(loaded, None, repeats=5)  # fresh: the load on this machine changes by the minute
    facts, model = build_model(loaded, profile, args.points)
    result = explore(model, ("throughput", "latency"), budget_s=3, seed=5)
    rows = []
    for i, c in enumerate(sorted(result.front, key=lambda c: c.cost.period)[: args.measure], 1):
        text = plan_text(c.plan, model.units, facts.names, loaded.platform, model=str(m.path), inputs=loaded.inputs,
                         header=["benchmarks/explore.py"])
        runs = [measure_plan(m.path, text, frames=args.frames) for _ in range(2)]
        fps = [r["measured_fps"] for r in runs]
        err = [c.cost.throughput / f - 1 for f in fps]
        rows.append([i, len(c.plan.starts), fmt_fps(c.cost.throughput), f"{min(fps):.3g} / {np.median(fps):.3g}",
                     f"{100 * min(err, key=abs):+.1f} % / {100 * float(np.median(err)):+.1f} %"])
    print(f"\n### Analytic vs measured: {name} on two 1-core devices of this machine, {args.frames} frames × 2 runs\n")
    print("target: analytic throughput within 15 % of the measured one\n")
    print(markdown(["plan", "stages", "analytic fps", "measured fps min / median", "error (best / median run)"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="budget 5 s; growth over 8, 16 devices, 24 and 100 points")
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--growth-budget", type=float, default=3.0)
    parser.add_argument("--points", type=int, default=48)
    parser.add_argument("--measure", type=int, default=0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--png", type=str, default=None)
    parser.add_argument("--cache", type=Path, default=zoo.CACHE_DIR)
    parser.add_argument("--skip", nargs="*", default=[], choices=["models", "growth"])
    args = parser.parse_args()
    args.devices, args.split_points = (8, 16, 32, 64), (24, 48, 100, 200)
    if args.quick:
        args.budget, args.devices, args.split_points = 5.0, (8, 16), (24, 100)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgec-explore-bench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}; load average {os.getloadavg()[0]:.2f} (other work shares these cores)")
    if "models" not in args.skip:
        table_models(args, work)
    if "growth" not in args.skip:
        table_growth(args, work)
    if args.measure:
        table_measured(args, work)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
