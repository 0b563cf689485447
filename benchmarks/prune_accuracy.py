"""Top-1 accuracy against the pruning ratio, per ranking and per repair, without any fine-tuning.

    python benchmarks/prune_accuracy.py [--kind resnet] [--ratios 0 10 20 30 50] [--rankings l1 l2 bn_gamma activation]
                                        [--repairs none bn bn+bias bn+bias+ls] [--test N] [--threads 1]

The model is `trained_cnn.py`'s small residual CNN (trained here on a real data set, BatchNorm
kept, its own held-out calibration images and test set). Every Conv is selected
(`prune [every conv] channels P% by RANKING calibrate "DIR"`: a global ranking; the
classifier's outputs are model outputs and stay); the pruned model is then scored in
onnxruntime on the test set. Repairs, all from the 500 calibration images: `none`;
`bn` re-estimates BatchNorm statistics; `bn+bias` also compensates each removed channel's
mean contribution in the consumer's bias (the pass's default with `calibrate`); `bn+bias+ls`
adds the least-squares refit of the consumers' weights (`prune{reconstruct=true}`).
Targets printed beside the figures: 10 % → at most 1 point lost, 30 % → at most 7.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tables import machine, markdown  # noqa: E402
from trained_cnn import accuracy, trained_model  # noqa: E402

import onnx  # noqa: E402

import edgec  # noqa: E402
from edgec.compiler.pass_manager import PassManager  # noqa: E402
from edgec.dsl.ast import format_name, quote  # noqa: E402
from edgec.passes import Canonicalize  # noqa: E402
from edgec.passes.prune import Prune  # noqa: E402
from edgec.compiler.self_contained import self_contained_proto  # noqa: E402

REPAIRS = {
    "none": {"bias_correction": False, "bn_stats": False},
    "bn": {"bias_correction": False, "bn_stats": True},
    "bn+bias": {"bias_correction": True, "bn_stats": True},
    "bn+bias+ls": {"bias_correction": True, "bn_stats": True, "reconstruct": True},
}
TARGETS = {10: 1.0, 30: 7.0}


def conv_names(path: Path) -> list[str]:
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Conv"]


def pruned_accuracy(model, ratio: int, ranking: str, repair: str, test: Path, threads: int, work: Path,
                    per_layer: bool = False) -> dict:
    convs = ", ".join(format_name(n) for n in conv_names(model.onnx_path))
    plan = (f"device a {{ cores 1 }}\nplace * on a\n"
            f"prune [{convs}] channels {ratio}% {'per_layer ' if per_layer else ''}by {ranking} calibrate {quote(str(model.calibration_dir))}\n")
    start = time.perf_counter()
    program = edgec.load_program(str(model.onnx_path), plan)
    PassManager([Canonicalize(), Prune(channel_multiple=1, **REPAIRS[repair])]).run(program)
    prune_s = time.perf_counter() - start
    out = work / f"{ranking}-{repair}-{ratio}.onnx"
    onnx.save(self_contained_proto(program.model), out)
    total = [c for c in program.pruning_cost if c.stage is None]
    removed = sum(p.channels_before - p.channels_after for p in program.pruning)
    return {"accuracy": accuracy(out, test, threads=threads), "prune_s": prune_s, "removed": removed,
            "macs": (total[0].macs_before, total[-1].macs_after) if total else None,
            "params": (total[0].params_before, total[-1].params_after) if total else None}


def subset(test_npz: Path, count: int | None, work: Path) -> Path:
    if count is None:
        return test_npz
    with np.load(test_npz) as data:
        path = work / "test-subset.npz"
        np.savez(path, input=data["input"][:count], labels=data["labels"][:count])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="resnet")
    parser.add_argument("--ratios", type=int, nargs="*", default=[0, 10, 20, 30, 50])
    parser.add_argument("--rankings", nargs="*", default=["l1", "l2", "bn_gamma", "activation", "contribution"])
    parser.add_argument("--repairs", nargs="*", default=list(REPAIRS), choices=list(REPAIRS))
    parser.add_argument("--test", type=int, default=None, help="score on the first N test images only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-layer", action="store_true", help="`per_layer` allocation instead of the global ranking")
    args = parser.parse_args()
    model = trained_model(args.kind, threads=args.threads, calibration=500)
    load = [os.getloadavg()[0]]
    channels = sum(int(t.dims[0]) for t in onnx.load(str(model.onnx_path)).graph.initializer
                   if t.name in {n.input[1] for n in onnx.load(str(model.onnx_path)).graph.node if n.op_type == "Conv"})
    with tempfile.TemporaryDirectory(prefix="edgec-prune-acc-") as tmp:
        work = Path(tmp)
        test = subset(model.test_npz, args.test, work)
        base = accuracy(model.onnx_path, test, threads=args.threads) * 100
        results = {}
        for ranking in args.rankings:
            for repair in args.repairs:
                for ratio in args.ratios:
                    if ratio == 0:
                        continue
                    results[ranking, repair, ratio] = pruned_accuracy(model, ratio, ranking, repair, test, args.threads,
                                                                      work, args.per_layer)
                    r = results[ranking, repair, ratio]
                    print(f"{ranking:10s} {repair:11s} {ratio:3d}%  {r['accuracy'] * 100:6.2f} %  "
                          f"({r['prune_s']:.1f} s)", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    count = args.test or int(np.load(model.test_npz)["labels"].shape[0])
    print(f"prune accuracy: {args.kind} CNN on {model.dataset} ({count} test images), float {base:.2f} %, "
          f"{channels} conv channels; {'per_layer' if args.per_layer else 'global ranking'}; no fine-tuning\n{machine()}; load average {load[0]:.1f} → {load[1]:.1f}\n")
    ratios = [r for r in args.ratios if r]
    head = ["ranking", "repair"] + [f"{r} %" for r in ratios]
    rows = []
    for ranking in args.rankings:
        for repair in args.repairs:
            row = [ranking, repair]
            for ratio in ratios:
                r = results[ranking, repair, ratio]
                drop = base - r["accuracy"] * 100
                mark = ""
                if ratio in TARGETS:
                    mark = " ✓" if drop <= TARGETS[ratio] else " ✗"
                row.append(f"{r['accuracy'] * 100:.2f} ({-drop:+.2f}){mark}")
            rows.append(row)
    print(markdown(head, rows))
    first = {ratio: results[args.rankings[0], args.repairs[0], ratio] for ratio in ratios}
    print("\n" + markdown(["ratio", "channels removed", "MACs", "parameters"],
                          [[f"{ratio} %", f"{first[ratio]['removed']} of {channels}",
                            _pair(first[ratio]["macs"]), _pair(first[ratio]["params"])] for ratio in ratios]))
    print(f"\ntargets: 10 % → at most {TARGETS[10]:g} point lost, 30 % → at most {TARGETS[30]:g} points "
          "(✓ met, ✗ missed); cells: top-1 % (change in points)")


def _pair(pair) -> str:
    return "-" if pair is None else f"{pair[0]:,} → {pair[1]:,} ({pair[1] / pair[0]:.0%})"


if __name__ == "__main__":
    main()
