"""TVM vs onnxruntime: stage run times and TVM compile times on light-zoo models.

    python benchmarks/tvm_stage_times.py [--models resnet50,vgg19] [--rounds 8] [--threads 2] [--cache DIR]

Why: the TVM backend is only worth deploying if its modules are about as fast as onnxruntime
on the same CPU, and its compile time must stay reasonable. Each model is split into 4 stages
(contiguous node ranges, as in the tests) on x86_64 devices, compiled by the ONNX backend,
then by TVM with one worker process and with one per core. Every stage runs in both engines
with the same thread count on the same inputs; a stage's time is the minimum over `rounds`
interleaved rounds of 3 runs (this machine is shared, so minima are the stable figure), and
the table sums them per model. `max rel err` is the largest per-stage output error.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ("resnet50", "densenet121", "inception_v1", "vgg19")


def _best(run, rounds: list[float]) -> None:
    run()
    start = time.perf_counter()
    for _ in range(3):
        run()
    rounds.append((time.perf_counter() - start) / 3)


def bench_model(name: str, cache: Path, work: Path, threads: int, rounds: int) -> dict:
    import numpy as np

    import edgec
    from edgec.backends.tvm import compile_directory
    from edgec.runtime.outputs import CompiledOutput, random_inputs
    from edgec.runtime.tvm_stage import TvmSession
    from zoo import randomized, range_plan

    model = randomized(name, cache)
    order = [n.name for n in edgec.load_model(model).graph]
    plan = range_plan(order, stages=4).replace(".cpu\n", f".cpu threads {threads}\n")
    plan = plan.replace("cores 2", f"cores {max(2, threads)}")
    compile_seconds = {}
    for jobs in (1, os.cpu_count() or 1):
        out = work / f"{name}-{jobs}"
        edgec.compile(model, plan, out)
        start = time.perf_counter()
        compile_directory(out, jobs=jobs)
        compile_seconds[jobs] = time.perf_counter() - start
    compiled = CompiledOutput.open(out)
    tensors = dict(random_inputs(compiled.manifest, seed=0))
    ort_total = tvm_total = worst = 0.0
    for stage in compiled.stages:
        ort = compiled.session(stage["rank"], threads)
        tvm = TvmSession.for_stage(compiled, stage["rank"], threads)
        feeds = {i.name: tensors[i.name] for i in ort.get_inputs()}
        expected = ort.run(None, feeds)
        for want, got in zip(expected, tvm.run(None, feeds)):
            scale = float(np.max(np.abs(want))) or 1.0
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))) / scale)
        ort_times, tvm_times = [], []
        for _ in range(rounds):
            _best(lambda: ort.run(None, feeds), ort_times)
            _best(lambda: tvm.run(None, feeds), tvm_times)
        ort_total += min(ort_times)
        tvm_total += min(tvm_times)
        tensors.update(zip((o.name for o in ort.get_outputs()), expected))
    return {"model": name, "stages": len(compiled.stages), "compile": compile_seconds, "ort": ort_total,
            "tvm": tvm_total, "err": worst}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/edgec/zoo").expanduser())
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    import tempfile

    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-tvm-bench-") as tmp:
        work = args.work or Path(tmp)
        for name in args.models.split(","):
            r = bench_model(name, args.cache, work, args.threads, args.rounds)
            compile_cells = " / ".join(f"{s:.1f} s" for s in r["compile"].values())
            rows.append([r["model"], r["stages"], compile_cells, f"{r['ort'] * 1e3:.1f} ms",
                         f"{r['tvm'] * 1e3:.1f} ms", f"{r['tvm'] / r['ort']:.2f}x", f"{r['err']:.1e}"])
            print(f"{name}: done", file=sys.stderr)
    workers = " / ".join(str(j) for j in sorted({1, os.cpu_count() or 1}))
    headers = ["model", "stages", f"TVM compile ({workers} workers)", "onnxruntime Σ stages", "TVM Σ stages",
               "TVM / ort", "max rel err"]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    print(f"{datetime.date.today()} · {cpu} · {os.cpu_count()} cores · {args.threads} threads per stage")
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
