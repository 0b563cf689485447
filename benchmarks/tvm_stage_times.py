"""TVM vs onnxruntime: stage run times, untuned and after `edgec tune`, on light-zoo models.

    python benchmarks/tvm_stage_times.py [--models resnet50,densenet121] [--rounds 5] [--threads 2]
                                         [--tune-budget 600] [--trials 64] [--cache DIR]

Why: the TVM backend is only worth deploying if its modules are about as fast as onnxruntime
on the same CPU. Each model is split into 4 stages (contiguous node ranges, as in the tests)
on x86_64 devices, compiled as `edgec compile --backend tvm` does (so BatchNorm is folded, as
the tvm backend requires) with tuning switched off (`EDGEC_TVM_TUNING=off`, so earlier tuning
records are not used), then, with `--tune-budget S`, tuned by `edgec tune` for S seconds and
measured again. Every stage runs in both engines with the same thread count on the same
inputs, in the same process: per stage and engine (onnxruntime, TVM untuned, TVM tuned) a
pause, 3 untimed runs, then `rounds` rounds of 3 runs; the table sums the stages' per-round
minima and medians. Why blocks, not interleaved rounds: both engines' worker threads spin
after a run, so with rounds interleaved the engine run right after the other one competed
with its spinning threads (identical TVM modules measured 19.8 ms alone and 54 ms right after
onnxruntime, 2026-12-02); a 1 s pause before each block lets the other engine's threads go
to sleep, and the untimed runs warm the caches. The header prints the CPU's ISA features and
the ISA edgec's schedules chose. `max rel err` is the largest per-stage output error against
onnxruntime, tuned modules included.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ("resnet50", "densenet121", "inception_v1")
WARMUP = 3
PAUSE = 1.0
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")


def cpu_description() -> str:
    """Model name and the ISA flags that matter for the schedules, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith(("flags", "Features"))), []))
    return f"{name} · {' '.join(f for f in ISA_FLAGS if f in flags)}"


def _round(run, samples: list[float]) -> None:
    start = time.perf_counter()
    for _ in range(3):
        run()
    samples.append((time.perf_counter() - start) / 3)


def bench_model(name: str, cache: Path, work: Path, threads: int, rounds: int, budget: float, trials: int) -> dict:
    import numpy as np

    import edgec
    from edgec.runtime.outputs import CompiledOutput, random_inputs
    from edgec.runtime.tvm_stage import TvmSession
    from edgec.tune import tune_output
    from zoo import randomized, range_plan

    model = randomized(name, cache)
    order = [n.name for n in edgec.load_model(model).graph]
    plan = range_plan(order, stages=4).replace(".cpu\n", f".cpu threads {threads}\n")
    plan = plan.replace("cores 2", f"cores {max(2, threads)}")
    out = work / name
    os.environ["EDGEC_TVM_TUNING"] = "off"
    start = time.perf_counter()
    edgec.compile(model, plan, out, backends=("onnx", "tvm"))
    compile_seconds = time.perf_counter() - start
    del os.environ["EDGEC_TVM_TUNING"]
    compiled = CompiledOutput.open(out)
    untuned = {}
    for stage in compiled.stages:
        copy = work / f"{name}-untuned-{stage.rank}.so"
        shutil.copyfile(out / compiled.manifest.section("tvm").stage(stage.rank).module, copy)
        untuned[stage.rank] = TvmSession(copy, stage.signature.inputs, stage.signature.outputs, threads=threads)
    tuned_kernels, tune_seconds = None, None
    if budget > 0:
        started = time.perf_counter()
        report = tune_output(out, trials=trials, budget=budget, progress=lambda m: print(m, file=sys.stderr))
        tune_seconds = time.perf_counter() - started
        tuned_kernels = sum(r.tuned_kernels for r in report if r.kept), sum(r.kernels for r in report)
        compiled = CompiledOutput.open(out)
    tensors = dict(random_inputs(compiled.manifest, seed=0))
    engines = ("ort", "tvm", "tuned") if budget > 0 else ("ort", "tvm")
    total = {e: [0.0, 0.0] for e in engines}
    worst = 0.0
    for stage in compiled.stages:
        sessions = {"ort": compiled.session(stage.rank, threads), "tvm": untuned[stage.rank]}
        if budget > 0:
            sessions["tuned"] = TvmSession.for_stage(compiled, stage.rank, threads)
        feeds = {i.name: tensors[i.name] for i in sessions["ort"].get_inputs()}
        expected = sessions["ort"].run(None, feeds)
        for engine in engines[1:]:
            for want, got in zip(expected, sessions[engine].run(None, feeds)):
                scale = float(np.max(np.abs(want))) or 1.0
                worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))) / scale)
        samples = {e: [] for e in engines}
        for engine in engines:
            time.sleep(PAUSE)
            for _ in range(WARMUP):
                sessions[engine].run(None, feeds)
            for _ in range(rounds):
                _round(lambda: sessions[engine].run(None, feeds), samples[engine])
        for engine in engines:
            total[engine][0] += min(samples[engine])
            total[engine][1] += float(np.median(samples[engine]))
        tensors.update(zip((o.name for o in sessions["ort"].get_outputs()), expected))
    return {"model": name, "stages": len(compiled.stages), "compile": compile_seconds, "times": total,
            "err": worst, "tuned_kernels": tuned_kernels, "tune_seconds": tune_seconds}


def _cell(pair: list[float]) -> str:
    return f"{pair[0] * 1e3:.1f} / {pair[1] * 1e3:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tune-budget", type=float, default=0.0, help="seconds of `edgec tune` per model (0: untuned only)")
    parser.add_argument("--trials", type=int, default=64, help="`edgec tune --trials`")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/edgec/zoo").expanduser())
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (min and median of 5 or more)")
    import tempfile

    import tvm

    from edgec.backends.tvm.isa import isa_of
    from edgec.backends.tvm.targets import _cpu_target, host_arch

    isa = isa_of(tvm.target.Target(_cpu_target(host_arch())))
    args.cache.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-tvm-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            r = bench_model(name, args.cache, work, args.threads, args.rounds, args.tune_budget, args.trials)
            t = r["times"]
            row = [r["model"], r["stages"], f"{r['compile']:.1f} s", _cell(t["ort"]), _cell(t["tvm"]),
                   f"{t['tvm'][0] / t['ort'][0]:.2f}x"]
            if "tuned" in t:
                row += [f"{r['tune_seconds']:.0f} s", _cell(t["tuned"]), f"{t['tuned'][0] / t['ort'][0]:.2f}x",
                        "{} of {}".format(*r["tuned_kernels"])]
            rows.append(row + [f"{r['err']:.1e}"])
            print(f"{name}: done", file=sys.stderr)
    headers = ["model", "stages", "compile (onnx + tvm)", "onnxruntime Σ min / median", "TVM untuned Σ min / median",
               "untuned / ort"]
    if args.tune_budget > 0:
        headers += [f"tune (budget {args.tune_budget:.0f} s)", "TVM tuned Σ min / median", "tuned / ort",
                    "kernels tuned (kept stages)"]
    headers.append("max rel err")
    print(f"{datetime.date.today()} · {cpu_description()} · {os.cpu_count()} cores · {args.threads} threads per stage")
    print(f"schedules: {isa.name} ({isa.vector_bits}-bit vectors, {isa.registers} registers) · {args.rounds} rounds · "
          f"load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
