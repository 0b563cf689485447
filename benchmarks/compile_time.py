"""Compile VGG-19, ResNet-101 and DenseNet-121 into 24 stages on 8 devices and compare with AutoDiCE.

    python benchmarks/compile_time.py [--quick] [--runs 3] [--cache DIR] [--work DIR] [--json FILE]

Why: edgec claims to split and compile big models far faster than AutoDiCE, whose published
worst case is 24 sub-models on 8 devices (Intel i7-9850H). Each model gets a plan of 24
contiguous node ranges (split points evenly spread in topological order) cycling over 8
devices, so every device hosts three stages. Every run is a fresh process (`measure.py`);
the first run's output is verified against the unsplit model with onnxruntime (not timed).

Phases: (1) load + constant folding + shape inference, (2) plan parse + lowering, (3) passes,
together the front-end; (4) writing the ONNX sub-models, the back-end. AutoDiCE's front-end
also extracts and saves its sub-models with `onnx.save` (its back-end generates ncnn/MPI code),
so the like-for-like comparison is edgec's total (1)–(4) with AutoDiCE's front-end + back-end;
both are printed. Models are benchmarked as one file (what `torch.onnx.export` writes) and,
unless `--quick`, with external data (edgec memory-maps it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import measure
import zoo
from tables import markdown, mib, min_med, seconds

MODELS = ("vgg19", "resnet101", "densenet121")
STAGES, DEVICES = 24, 8
TARGET_SPEEDUP, TARGET_MEMORY = 10.0, 1.5


AUTODICE = {  # Intel i7-9850H, 24 sub-models on 8 devices: layers, parameters, front-end s, back-end s
    "densenet121": (910, "8.06M", 1.93, 0.3),
    "resnet101": (344, "44.6M", 7.30, 0.1),
    "vgg19": (47, "143M", 21.50, 0.4),
}


def other_backends() -> str:
    """Backends besides onnx that exist as packages; none has a write entry point to time yet."""
    import edgec.backends

    root = Path(edgec.backends.__file__).parent
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "onnx" and (p / "__init__.py").exists())
    return f"{', '.join(found)}: present, not timed" if found else "none yet (onnx only)"


def bench(name: str, *, cache: Path | None, work: Path, runs: int, external: bool) -> dict:
    model = zoo.cached(name, cache, external=external)
    plan = measure.stage_plan(model.nodes, STAGES, DEVICES)
    summary = measure.repeat(model.path, plan, work / f"{name}-out", runs)
    summary.update(name=name, storage="external data" if external else "one file", layers=model.layers,
                   parameters=model.parameters, buffers=model.buffers, weight_bytes=model.weight_bytes)
    return summary


def verified(r: dict) -> bool:
    return bool(r["verify"] and r["verify"]["ok"])


def _speedup(reference: float, ours: float, correct: bool = True) -> str:
    """A compile whose output does not verify gets no speed-up: a fast wrong answer does not count."""
    if not correct:
        return "— (output wrong)"
    ratio = reference / ours if ours > 0 else float("inf")
    return f"{ratio:.1f}× {'✓' if ratio >= TARGET_SPEEDUP else '✗'}"


def front_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        layers, params, front, _ = AUTODICE[r["name"]]
        rows.append([
            r["name"], r["storage"], f"{r['layers']} ({layers})", f"{r['parameters'] / 1e6:.2f}M ({params})",
            f"{r['stages']} / {r['devices']} / {r['transfers']}", min_med(r, "load"), min_med(r, "plan"),
            min_med(r, "passes"), min_med(r, "front"), seconds(front), _speedup(front, r["median"]["front"], verified(r)),
        ])
    headers = ["model", "storage", "layers (AutoDiCE)", "params (AutoDiCE)", "stages / devices / transfers",
               "(1) load+fold+infer", "(2) plan", "(3) passes", "front-end (1–3)", "AutoDiCE front-end",
               "speed-up (median)"]
    return markdown(headers, rows)


def back_table(results: list[dict]) -> str:
    rows, others = [], other_backends()
    for r in results:
        _, _, front, back = AUTODICE[r["name"]]
        total = r["median"]["front"] + r["median"]["back"]
        rows.append([
            r["name"], r["storage"], min_med(r, "write"), seconds(r["median"]["hash"]), others,
            seconds(back), _speedup(back, r["median"]["back"], verified(r)), seconds(total), seconds(front + back),
            _speedup(front + back, total, verified(r)),
        ])
    headers = ["model", "storage", "(4) onnx sub-models", "of which source sha256", "other backends",
               "AutoDiCE back-end (codegen)", "speed-up (4)", "edgec total (1–4)", "AutoDiCE total",
               "speed-up total"]
    return markdown(headers, rows)


def memory_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        net = r["peak_rss"] - r["baseline_rss"]
        ratio = net / r["weight_bytes"]
        check = r["verify"]
        rows.append([
            r["name"], r["storage"], mib(r["weight_bytes"]), mib(r["baseline_rss"]),
            f"{mib(r['peak_front_rss'])} / {mib(r['peak_rss'])}",
            f"{ratio:.2f}× {'✓' if ratio <= TARGET_MEMORY else '✗'}", mib(r["written"]),
            f"ok, {check['max_rel']:.1e}" if verified(r) else f"MISMATCH {check}",
        ])
    headers = ["model", "storage", "weights", "RSS after imports", "peak RSS front-end / whole compile",
               "(peak − imports) / weights", "bytes written", "verify (max rel err)"]
    return markdown(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per model, one-file storage only")
    parser.add_argument("--cache", type=Path, default=zoo.CACHE_DIR)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgec-bench"))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    results = [bench(name, cache=args.cache, work=args.work, runs=runs, external=external)
               for external in ((False,) if args.quick else (False, True)) for name in args.models]
    what = f"{STAGES} stages on {DEVICES} devices, min / median of {runs} fresh-process run(s)"
    print(f"\n### Front-end ({what})\n\n{front_table(results)}")
    print(f"\n### Back-end and total\n\n{back_table(results)}")
    print(f"\n### Memory, output, verification\n\n{memory_table(results)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not all(verified(r) for r in results):
        raise SystemExit("some compiled outputs do not verify")


if __name__ == "__main__":
    main()
