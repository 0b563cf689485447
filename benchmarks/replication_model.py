"""Replication in the explorer's model: predicted throughput of a 4-device pipeline with one device 3x slower.

    python benchmarks/replication_model.py [--points 48] [--cache DIR]

Model: the zoo's ResNet-101 (random weights; built once and cached), compute times from one
`edgec profile` of it on this machine (cached beside it, as `benchmarks/explore.py` does).
Platform: d0…d3, 2 cores each, full mesh of 1 Gbit / 1 ms links; d1 runs at `speed 33.333%`
(3x slower); a fifth device `spare` (full speed, idle in the original plan) for the rows that
say so. Rows: the plan balanced for four equal devices, run with d1 slowed; that plan with its
bottleneck stage replicated on d1 and spare; the chain DP's optimum without replication
(rebalancing offline) and with up to 4 replicas per stage, on the four devices and with spare;
the 4-device replicated optimum with spare then given to its bottleneck (`grow_replicas`).
All figures are the analytic model's (`explorer/replication.py`), not measurements; the DP
times are min / median of 3 runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import zoo  # noqa: E402
from explore import profile_for  # noqa: E402
from tables import markdown  # noqa: E402

from edgec.explorer.chain_dp import chain_optimum  # noqa: E402
from edgec.explorer.replication import grow_replicas  # noqa: E402
from edgec.explorer.session import build_model, load  # noqa: E402


def platform(slow: bool, spare: bool) -> str:
    names = ["d0", "d1", "d2", "d3"] + (["spare"] if spare else [])
    lines = [f"device {n} {{ cores 2{' speed 33.333%' if slow and n == 'd1' else ''} }}" for n in names]
    lines += [f"link {a} <-> {b} {{ bandwidth 1Gbit latency 1ms }}" for i, a in enumerate(names) for b in names[i + 1:]]
    return "\n".join(lines) + "\n"


def model_for(text: str, work: Path, cache: Path, points: int):
    m = zoo.cached("resnet101", cache)
    plan = work / f"p{abs(hash(text))}.edge"
    plan.write_text(text)
    loaded = load(m.path, plan)
    return build_model(loaded, profile_for("resnet101", cache, loaded), points)[1]


def timed(fn, repeats: int = 3):
    seconds, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return result, min(seconds), float(np.median(seconds))


def describe(plan, names) -> str:
    extra = plan.replicas or ((),) * len(plan.devices)
    return " → ".join("+".join(names[d] for d in (dev, *more)) for dev, more in zip(plan.devices, extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=48)
    parser.add_argument("--cache", type=Path, default=zoo.CACHE_DIR)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        even = model_for(platform(False, False), work, args.cache, args.points)
        slow = model_for(platform(True, False), work, args.cache, args.points)
        slow5 = model_for(platform(True, True), work, args.cache, args.points)
    balanced = chain_optimum(even).plan
    original = slow.evaluate(balanced)
    bottleneck = int(np.argmax(original.stage_time))
    spare = slow5.platform.devices.index("spare")
    extra = tuple((spare,) if k == bottleneck else () for k in range(len(balanced.starts)))
    with_replica = slow5.evaluate(replace(balanced, replicas=extra))
    share = original.stage_time[bottleneck] / with_replica.stage_time[bottleneck]
    rows = [["balanced for 4 equal devices, d1 3x slower", describe(balanced, slow.platform.devices),
             f"{original.throughput:.3g}", "1.00x", "-"],
            [f"same, bottleneck stage {bottleneck} replicated on its device + spare",
             describe(replace(balanced, replicas=extra), slow5.platform.devices), f"{with_replica.throughput:.3g}",
             f"{with_replica.throughput / original.throughput:.2f}x (stage: {share:.2f}x of ideal 2x)", "-"]]
    for label, model, most in (("DP optimum, no replication (offline rebalance)", slow, 1),
                               ("DP optimum, up to 4 replicas per stage", slow, 4),
                               ("DP optimum, no replication, with spare", slow5, 1),
                               ("DP optimum, up to 5 replicas per stage, with spare", slow5, 5)):
        optimum, lo, med = timed(lambda: chain_optimum(model, max_replicas=most))
        rows.append([label, describe(optimum.plan, model.platform.devices), f"{optimum.throughput:.3g}",
                     f"{optimum.throughput / original.throughput:.2f}x", f"{1e3 * lo:.2f} / {1e3 * med:.2f} ms"])
    four = chain_optimum(slow, max_replicas=4).plan
    (grown, lo, med) = timed(lambda: grow_replicas(slow5, four, 5))
    cost = slow5.evaluate(grown)
    rows.append(["4-device replicated DP optimum, then spare given to its bottleneck (grow_replicas)",
                 describe(grown, slow5.platform.devices), f"{cost.throughput:.3g}",
                 f"{cost.throughput / original.throughput:.2f}x", f"{1e3 * lo:.2f} / {1e3 * med:.2f} ms"])
    print(f"\n### ResNet-101, {slow.units.count - 1} split points, d1 3x slower, 1 Gbit / 1 ms links "
          f"(analytic model; load average {os.getloadavg()[0]:.2f})\n")
    print(markdown(["plan", "stages (replicas joined by +)", "predicted fps", "vs original", "DP time min / median"],
                   rows))


if __name__ == "__main__":
    main()
