"""Stage MACs and measured stage time before and after pruning the later stages of real-size models.

    python benchmarks/prune_speed.py [--models vgg19 resnet101] [--fraction 0.3] [--repeats 5] [--threads 1]

Each model (benchmarks/zoo.py: torchvision's VGG-19 and ResNet-101 layer for layer, random
weights — speed does not depend on them) is compiled twice with a two-stage plan: the early
layers on device `a`, the later stages on `b` (VGG-19: conv blocks 4-5 and the hidden FC
layers; ResNet-101: layer3 and layer4), once as it is and once with
`prune <later stages> channels 30%` (L1, global ranking, no calibration). Stage 1's sub-model
is then timed in onnxruntime (CPU, `--threads`), before and after runs interleaved so that
load from other processes falls on both alike; min and median of `--repeats` runs. The
target printed beside the figures: the stage's speed-up is at least the square root of its
MAC reduction (Torch-Pruning: 1.35x faster for 2.04x fewer MACs on ResNet-50).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tables import machine, markdown, seconds  # noqa: E402
from zoo import cached  # noqa: E402

import edgec  # noqa: E402

LATER = {
    "vgg19": ('"features.0" .. "features.18"', '"features.19" .. "classifier.4"'),
    "resnet101": ('conv1 .. "layer2.3.relu_2"', '["layer3*", "layer4*"]'),
}


def plan(model: str, fraction: float | None) -> str:
    early, later = LATER[model]
    text = (f"device a {{ cores 2 }}\ndevice b {{ cores 2 }}\nlink a <-> b {{ bandwidth 1Gbit }}\n"
            f"place {early} on a\nplace * on b\n")
    if fraction is not None:
        text += f"prune {later} channels {fraction * 100:g}% by l1\n"
    return text


def stage_session(out: Path, rank: int, threads: int):
    import onnxruntime as ort

    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["stages"][rank]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(out / stage["model"]), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    return sess, feed


def stage_macs(program, rank: int) -> int:
    from edgec.compiler import cost

    return sum(cost.macs(n) for n in program.stage_nodes(rank))


def measure(model: str, fraction: float, repeats: int, threads: int, work: Path) -> dict:
    path = cached(model).path
    results = {}
    for label, frac in (("before", None), ("after", fraction)):
        out = work / f"{model}-{label}"
        start = time.perf_counter()
        compiled = edgec.compile(str(path), plan(model, frac), out)
        results[label] = {"out": out, "compile_s": time.perf_counter() - start,
                          "macs": stage_macs(compiled.program, 1),
                          "total_macs": sum(stage_macs(compiled.program, s.index) for s in compiled.program.stages),
                          "warnings": [str(w) for w in compiled.program.warnings]}
        del compiled
    sessions = {label: stage_session(results[label]["out"], 1, threads) for label in results}
    for sess, feed in sessions.values():
        sess.run(None, feed)
    times: dict[str, list[float]] = {label: [] for label in results}
    load = [os.getloadavg()[0]]
    for _ in range(repeats):
        for label, (sess, feed) in sessions.items():
            start = time.perf_counter()
            sess.run(None, feed)
            times[label].append(time.perf_counter() - start)
    load.append(os.getloadavg()[0])
    for label in results:
        results[label]["min"] = min(times[label])
        results[label]["median"] = statistics.median(times[label])
    return {"model": model, "load": load, **results}


def table(rows: list[dict], fraction: float, repeats: int, threads: int) -> str:
    body = []
    for r in rows:
        b, a = r["before"], r["after"]
        mac_x = b["macs"] / a["macs"]
        speed_min, speed_med = b["min"] / a["min"], b["median"] / a["median"]
        target = math.sqrt(mac_x)
        body.append([r["model"], f"{b['total_macs'] / 1e9:.2f} → {a['total_macs'] / 1e9:.2f} G",
                     f"{b['macs'] / 1e9:.2f} → {a['macs'] / 1e9:.2f} G ({mac_x:.2f}x)",
                     f"{seconds(b['min'])} / {seconds(b['median'])}", f"{seconds(a['min'])} / {seconds(a['median'])}",
                     f"{speed_min:.2f}x / {speed_med:.2f}x", f"≥ {target:.2f}x",
                     "met" if speed_med >= target else "missed", f"{r['load'][0]:.1f} → {r['load'][1]:.1f}"])
    head = ["model", "MACs (model)", "MACs (stage 1)", "stage 1 before (min / median)", "after (min / median)",
            "speed-up (min / median)", "target √(MAC reduction)", "", "load avg"]
    return (f"prune {fraction:.0%} of the later stages' channels (l1, global); onnxruntime CPU, {threads} thread(s), "
            f"{repeats} interleaved runs\n{machine()}\n\n" + markdown(head, body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["vgg19", "resnet101"], choices=sorted(LATER))
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgec-prune-speed-") as tmp:
        rows = [measure(m, args.fraction, args.repeats, args.threads, Path(tmp)) for m in args.models]
    print(table(rows, args.fraction, args.repeats, args.threads))
    for r in rows:
        for w in r["after"]["warnings"]:
            print(f"  {r['model']}: {w}")


if __name__ == "__main__":
    main()
