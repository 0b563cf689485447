"""How edgec's compile time grows with the number of stages and with model size.

    python benchmarks/scaling.py [--quick] [--runs 3] [--cache DIR] [--work DIR]

Why: a compiler that is fast on one plan can still hide a quadratic step (a scan of the whole
graph per stage or per transfer) that only shows on the next, bigger plan. Three series:
ResNet-101 and DenseNet-121 (whose dense connections make many boundary tensors) split into
2…48 stages on min(stages, 8) devices, and ResNet-18…152 split into 24 stages on 8 devices.
Each point is timed in fresh processes like `compile_time.py` and its first run verified.
The fitted exponent k (time ∝ x^k, least squares on log-log) should stay at or below 1;
time per node shows the same thing point by point.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import measure
import zoo
from tables import markdown, min_med

STAGE_COUNTS = (2, 4, 8, 16, 24, 48)
SIZES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
QUICK_STAGES = (2, 8, 24, 48)
QUICK_SIZES = ("resnet18", "resnet50", "resnet152")


def exponent(xs: list[float], ys: list[float]) -> float:
    """k in y ∝ x^k, fitted on log-log; fixed per-process costs pull it below 1."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _verified(r: dict) -> str:
    check = r["verify"]
    return f"ok, {check['max_rel']:.0e}" if check and check["ok"] else f"MISMATCH {check}"


def _pass(r: dict, name: str) -> str:
    return min_med(r, f"pass:{name}") if f"pass:{name}" in r["min"] else "n/a"


def _all_ok(results: list[dict]) -> bool:
    return all(r["verify"] and r["verify"]["ok"] for r in results)


def by_stages(name: str, counts: tuple[int, ...], *, cache: Path | None, work: Path, runs: int) -> tuple[str, bool]:
    model = zoo.cached(name, cache)
    rows, results = [], []
    for stages in counts:
        plan = measure.stage_plan(model.nodes, stages, min(stages, 8))
        r = measure.repeat(model.path, plan, work / f"{name}-stages{stages}-out", runs)
        results.append(r)
        rows.append([stages, r["devices"], r["transfers"], min_med(r, "load"), min_med(r, "plan"),
                     min_med(r, "passes"), _pass(r, "comm-insert"), min_med(r, "front"),
                     f"{r['median']['front'] / r['nodes'] * 1e6:.0f} µs", min_med(r, "write"), _verified(r)])
    fits = {key: exponent(list(counts), [r["median"][key] for r in results]) for key in ("front", "passes", "back")}
    table = markdown(["stages", "devices", "transfers", "(1) load", "(2) plan", "(3) passes", "of which comm-insert",
                      "front-end (1–3)", "front-end per node", "(4) onnx write", "verify"], rows)
    return (f"{table}\n\nfront-end ∝ stages^{fits['front']:.2f}, passes ∝ stages^{fits['passes']:.2f}, "
            f"back-end ∝ stages^{fits['back']:.2f} ({name}, {model.layers} nodes)"), _all_ok(results)


def by_size(names: tuple[str, ...], *, cache: Path | None, work: Path, runs: int) -> tuple[str, bool]:
    rows, results, nodes = [], [], []
    for name in names:
        model = zoo.cached(name, cache)
        plan = measure.stage_plan(model.nodes, 24, 8)
        r = measure.repeat(model.path, plan, work / f"{name}-out", runs)
        results.append(r)
        nodes.append(model.layers)
        rows.append([name, model.layers, f"{model.parameters / 1e6:.1f}M", r["transfers"], min_med(r, "load"),
                     min_med(r, "plan"), min_med(r, "passes"), min_med(r, "front"),
                     f"{r['median']['front'] / model.layers * 1e6:.0f} µs", min_med(r, "write"), _verified(r)])
    k_front = exponent(nodes, [r["median"]["front"] for r in results])
    k_passes = exponent(nodes, [r["median"]["passes"] for r in results])
    table = markdown(["model", "nodes", "params", "transfers", "(1) load", "(2) plan", "(3) passes",
                      "front-end (1–3)", "front-end per node", "(4) onnx write", "verify"], rows)
    fit = f"front-end ∝ nodes^{k_front:.2f}, passes ∝ nodes^{k_passes:.2f} (24 stages on 8 devices)"
    return f"{table}\n\n{fit}", _all_ok(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per point, fewer points")
    parser.add_argument("--cache", type=Path, default=zoo.CACHE_DIR)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgec-bench"))
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    stages, sizes = (QUICK_STAGES, QUICK_SIZES) if args.quick else (STAGE_COUNTS, SIZES)
    note = f"min / median of {runs} fresh-process run(s)" if runs > 1 else "1 fresh-process run"
    ok = True
    for name, what in (("resnet101", "ResNet-101"), ("densenet121", "DenseNet-121, many boundary tensors")):
        print(f"\n### Scaling with the number of stages ({what}, {note})\n")
        text, verified = by_stages(name, stages, cache=args.cache, work=args.work, runs=runs)
        print(text, flush=True)
        ok &= verified
    print(f"\n### Scaling with model size (ResNet-18…152, 24 stages on 8 devices, {note})\n")
    text, verified = by_size(sizes, cache=args.cache, work=args.work, runs=runs)
    print(text)
    if not (ok and verified):
        raise SystemExit("some compiled outputs do not verify")


if __name__ == "__main__":
    main()
