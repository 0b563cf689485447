"""Compile VGG-19, ResNet-101 and DenseNet-121 into 24 stages on 8 devices: what a user waits for, and AutoDiCE.

    python benchmarks/compile_time.py [--runs 3] [--models …] [--quick] [--no-tvm] [--tvm-runs 1]
                                      [--external] [--profile DIR] [--cache DIR] [--work DIR] [--json FILE]

Why two clocks: AutoDiCE timed its front-end inside its process, and edgec's in-process phases
are compared with that (`measure.py`: (1) load + fold + infer, (2) plan, (3) passes, (4) ONNX
sub-models). A user waits for the whole process — `edgec compile MODEL --plan P -o OUT`, from
exec to exit: interpreter start-up, imports, the compile, exit — so that is timed too, as a
subprocess, next to the phases, in the same loop (run i of every model and both clocks before
run i + 1), so a noisy moment hits both. `edgec --help` and a bare `python -c pass` (the floor
no command can beat) are timed in the same loop. The TVM backend is timed as a whole process:
cold (an empty module cache), warm (the same plan again: every module from the cache) and
after one `place` line moved (only the stages whose sub-model changed are rebuilt; the
progress output says which).

Every timed output is verified (the first of each kind; never timed): in-process and
whole-process outputs with onnxruntime, the TVM output with the TVM engine. Reported: min and
median of `--runs`, the spread ((max − min) / median) and the load average before and after,
AutoDiCE's published figures (Intel i7-9850H, 24 sub-models on 8 devices) and the targets.
`--profile DIR` adds a cProfile of one whole-process compile per model and prints where its
time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import numpy as np
import zoo
from tables import machine, markdown, mib, seconds

MODELS = ("vgg19", "resnet101", "densenet121")
STAGES, DEVICES = 24, 8
MOVED_FROM = 11
"""The plan for "one place line changed" moves the first node of range k + 1 into range k, for the first
k ≥ 11 whose next range has a node to spare."""

AUTODICE = {  # Intel i7-9850H, 24 sub-models on 8 devices: layers, parameters, front-end s, back-end s
    "densenet121": (910, "8.06M", 1.93, 0.3),
    "resnet101": (344, "44.6M", 7.30, 0.1),
    "vgg19": (47, "143M", 21.50, 0.4),
}
TARGET_IN_PROCESS = {name: front / 10 for name, (_, _, front, _) in AUTODICE.items()}
"""≤ 1/10 of AutoDiCE's published front-end, timed the way AutoDiCE timed itself."""
TARGET_WHOLE = {"vgg19": 2.15, "resnet101": 1.5, "densenet121": 1.2}
TARGET_HELP = 0.3
TARGET_MEMORY = 1.5


def edgec_command() -> list[str]:
    """What a user types: the installed `edgec` script beside this Python, else `python -m edgec`."""
    script = Path(sys.executable).with_name("edgec")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgec"]


LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": seconds, "peak_rss": usage.ru_maxrss * 1024, "code": os.waitstatus_to_exitcode(status)}, f)
"""
"""Spawns, waits for and reports one command. Why a launcher: Linux carries a parent's peak RSS into
its child's `ru_maxrss` (across exec), so a child of this process, which has built models and imported
edgec, would report this process's peak; the launcher is a bare interpreter of about 10 MiB."""


def timed(command: list[str], *, env: dict[str, str] | None = None) -> dict:
    """Run `command` to exit; wall seconds from spawn to reaped, peak RSS, exit code, output."""
    with tempfile.TemporaryDirectory() as tmp:
        report, out, err = Path(tmp) / "report.json", Path(tmp) / "out", Path(tmp) / "err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(report), *command], stdout=stdout,
                           stderr=stderr, env={**os.environ, **(env or {})}, check=False)
        result = json.loads(report.read_text())
        result["stdout"] = out.read_bytes().decode(errors="replace")
        result["stderr"] = err.read_bytes().decode(errors="replace")
        return result


def compile_command(model: Path, plan: Path, out: Path, *, tvm: bool = False) -> list[str]:
    return [*edgec_command(), "compile", str(model), "--plan", str(plan), "-o", str(out),
            *(["--backend", "tvm"] if tvm else [])]


WIDE = {"COLUMNS": "1000"}
"""So rich does not wrap the progress lines that say which stages were compiled."""


def whole(model: Path, plan: Path, out: Path, *, tvm: bool = False, env: dict | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    result = timed(compile_command(model, plan, out, tvm=tvm), env={**WIDE, **(env or {})})
    if result["code"] != 0:
        raise RuntimeError(f"edgec compile {model.name} failed:\n{result['stderr'][-3000:]}")
    result["written"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return result


def tvm_stages(stderr: str) -> tuple[list[int], list[int]]:
    """(compiled, from the cache) stage ranks, from `edgec compile --backend tvm`'s progress output."""
    compiled = sorted(int(r) for r in re.findall(r"stage (\d+): \{[^}]*\}\s+in\s+[\d.]+ s", stderr))
    cached = sorted(int(r) for r in re.findall(r"stage (\d+): \{[^}]*\}\s+from the module cache", stderr))
    return compiled, cached


def stats(values: list[float]) -> dict:
    med = statistics.median(values)
    return {"min": min(values), "median": med, "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / med if med else 0.0, "all": values}


def min_med(s: dict) -> str:
    return seconds(s["min"]) if s["n"] == 1 else f"{seconds(s['min'])} / {seconds(s['median'])}"


def check(value: float, target: float) -> str:
    return f"{'✓' if value <= target else '✗'} (≤ {seconds(target)})"


def verified(check_result: dict | None) -> str:
    if not check_result:
        return "—"
    return f"ok, {check_result['max_rel']:.1e}" if check_result["ok"] else f"MISMATCH {check_result}"


def bench(names: list[str], *, cache: Path, work: Path, runs: int, external: bool) -> dict:
    """In-process phases and whole-process compiles of every model, interleaved run by run, plus --help."""
    models = {name: zoo.cached(name, cache, external=external) for name in names}
    plans = {}
    for name, model in models.items():
        plans[name] = work / f"{name}.edge"
        plans[name].write_text(measure.stage_plan(model.nodes, STAGES, DEVICES))
        measure.warm_page_cache(model.path)
    inproc: dict[str, list[dict]] = {n: [] for n in names}
    wholes: dict[str, list[dict]] = {n: [] for n in names}
    checks: dict[str, dict] = {}
    helps, floors = [], []
    for i in range(runs):
        for name, model in models.items():
            inproc[name].append(measure.run(model.path, plans[name].read_text(), work / f"{name}-in", verify=i == 0))
            out = work / f"{name}-whole"
            wholes[name].append(whole(model.path, plans[name], out))
            if i == 0:
                checks[name] = measure.verify_output(out)
            shutil.rmtree(out, ignore_errors=True)
        helps.append(timed([*edgec_command(), "--help"])["seconds"])
        floors.append(timed([sys.executable, "-c", "pass"])["seconds"])
    results = {}
    for name, model in models.items():
        runs_in = inproc[name]
        phase = {p: stats([r["seconds"][p] for r in runs_in]) for p in measure.PHASES}
        phase["front"] = stats([sum(r["seconds"][p] for p in measure.PHASES[:3]) for r in runs_in])
        phase["total"] = stats([sum(r["seconds"].values()) for r in runs_in])
        phase["hash"] = stats([r["hash_seconds"] for r in runs_in])
        results[name] = {
            "model": name, "storage": "external data" if external else "one file", "layers": model.layers,
            "parameters": model.parameters, "weight_bytes": model.weight_bytes, "stages": runs_in[0]["stages"],
            "devices": runs_in[0]["devices"], "transfers": runs_in[0]["transfers"], "phases": phase,
            "baseline_rss": runs_in[0]["baseline_rss"], "peak_rss": max(r["peak_rss"] for r in runs_in),
            "verify_in_process": runs_in[0].get("verify"), "whole": stats([w["seconds"] for w in wholes[name]]),
            "whole_peak_rss": max(w["peak_rss"] for w in wholes[name]), "written": wholes[name][0]["written"],
            "verify_whole": checks[name],
        }
    return {"models": results, "help": stats(helps), "python": stats(floors)}


def bench_tvm(names: list[str], *, cache: Path, work: Path, runs: int, cold_runs: int) -> dict:
    """`edgec compile --backend tvm`: cold (empty module cache), warm (same plan), one place line moved."""
    results = {}
    for name in names:
        model = zoo.cached(name, cache)
        plan, moved = work / f"{name}-tvm.edge", work / f"{name}-tvm-moved.edge"
        plan.write_text(measure.stage_plan(model.nodes, STAGES, DEVICES))
        bounds = np.linspace(0, len(model.nodes), STAGES + 1).astype(int)
        stage = next(k for k in range(MOVED_FROM, STAGES - 1) if bounds[k + 2] - bounds[k + 1] >= 2)
        moved.write_text(measure.stage_plan(model.nodes, STAGES, DEVICES, moved=stage))
        out, colds, warms, moves = work / f"{name}-tvm", [], [], []
        for i in range(cold_runs):
            modules = work / f"tvm-modules-{name}"
            shutil.rmtree(modules, ignore_errors=True)
            env = {"EDGEC_TVM_MODULE_CACHE": str(modules)}
            colds.append(whole(model.path, plan, out, tvm=True, env=env))
            if i == 0:
                check = measure.verify_output(out, "tvm")
                manifest = json.loads((out / "manifest.json").read_text())
        known = {entry.name for entry in modules.iterdir()}
        for _ in range(runs):
            warms.append(whole(model.path, plan, out, tvm=True, env=env))
            moves.append(whole(model.path, moved, out, tvm=True, env=env))
            for entry in modules.iterdir():
                if entry.name not in known:  # so the next "moved" compile rebuilds its stages again
                    shutil.rmtree(entry)
        shutil.rmtree(out, ignore_errors=True)
        results[name] = {
            "cold": stats([c["seconds"] for c in colds]), "warm": stats([w["seconds"] for w in warms]),
            "moved": stats([m["seconds"] for m in moves]), "cold_stages": tvm_stages(colds[0]["stderr"]),
            "warm_stages": tvm_stages(warms[0]["stderr"]), "moved_stages": tvm_stages(moves[0]["stderr"]),
            "module_bytes": sum(s["bytes"] for s in manifest["tvm"]["stages"]), "jobs": manifest["tvm"]["jobs"],
            "moved_stage": stage,
            "cold_peak_rss": max(c["peak_rss"] for c in colds), "verify": check,
        }
    return results


def profile_whole(names: list[str], *, cache: Path, work: Path, directory: Path) -> str:
    """cProfile of one whole-process compile per model: where the time a user waits goes."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        model = zoo.cached(name, cache)
        plan, out, prof = work / f"{name}.edge", work / f"{name}-prof", directory / f"{name}.prof"
        plan.write_text(measure.stage_plan(model.nodes, STAGES, DEVICES))
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "edgec", "compile", str(model.path),
                   "--plan", str(plan), "-o", str(out)]
        subprocess.run(command, check=True, capture_output=True)
        shutil.rmtree(out, ignore_errors=True)
        rows.append([name, *_profile_row(pstats.Stats(str(prof)))])
    headers = ["model", "profiled total", "imports", "load + lower", "passes", "sub-models (stream, hash, check)",
               "manifest + hashes", "top self-time functions"]
    return markdown(headers, rows)


def _profile_row(stats_: pstats.Stats) -> list[str]:
    table = stats_.stats  # type: ignore[attr-defined]

    def cum(fragment: str, name: str) -> float:
        return max((v[3] for (f, _, n), v in table.items() if fragment in f and n == name), default=0.0)

    total = max(v[3] for v in table.values())
    imports = sum(v[3] for (f, _, n), v in table.items() if n == "<module>" and f.endswith(("edgec/api.py", "edgec/cli.py")))
    imports += cum("typer/_adapters.py", "<module>")
    top = sorted(((v[2], f"{Path(f).name}:{n}") for (f, _, n), v in table.items()), reverse=True)[:4]
    return [seconds(total), seconds(imports), seconds(cum("edgec/api.py", "load_program")),
            seconds(cum("compiler/pass_manager.py", "run")), seconds(cum("onnx/submodels.py", "write_stage_files")),
            seconds(cum("backends/artifacts.py", "write_artifacts") - cum("onnx/submodels.py", "write_stage_files")),
            ", ".join(f"{label} {seconds(t)}" for t, label in top)]


def tables(result: dict) -> str:
    models = result["models"]
    out = []
    rows = []
    for name, r in models.items():
        layers, params, front, _ = AUTODICE[name]
        p = r["phases"]
        rows.append([name, r["storage"], f"{r['layers']} ({layers})", f"{r['parameters'] / 1e6:.2f}M ({params})",
                     f"{r['stages']} / {r['devices']} / {r['transfers']}", min_med(p["load"]), min_med(p["plan"]),
                     min_med(p["passes"]), min_med(p["front"]), seconds(front),
                     check(p["front"]["median"], TARGET_IN_PROCESS[name]), f"{front / p['front']['median']:.0f}×",
                     min_med(p["write"]), verified(r["verify_in_process"])])
    out.append(markdown(["model", "storage", "layers (AutoDiCE)", "params (AutoDiCE)", "stages / devices / transfers",
                         "(1) load+fold+infer", "(2) plan", "(3) passes", "front-end (1–3)", "AutoDiCE front-end",
                         "target ≤ 1/10", "speed-up", "(4) sub-models", "verify"], rows))
    rows = []
    for name, r in models.items():
        _, _, front, back = AUTODICE[name]
        p, w = r["phases"], r["whole"]
        rows.append([name, r["storage"], min_med(w), f"{w['spread']:.0%}", min_med(p["total"]),
                     seconds(w["median"] - p["total"]["median"]), seconds(front), seconds(front + back),
                     check(w["median"], TARGET_WHOLE[name]), mib(r["whole_peak_rss"]), verified(r["verify_whole"])])
    help_, python = result["help"], result["python"]
    rows.append(["`edgec --help`", "—", min_med(help_), f"{help_['spread']:.0%}", "—",
                 f"`python -c pass`: {min_med(python)}", "—", "—", check(help_["median"], TARGET_HELP), "—", "—"])
    out.append(markdown(["command", "storage", "whole process", "spread", "in-process (1–4)",
                         "start-up + imports + exit (median)", "AutoDiCE front-end", "AutoDiCE front + back",
                         "target", "peak RSS", "verify"], rows))
    rows = []
    for name, r in models.items():
        net = r["peak_rss"] - r["baseline_rss"]
        rows.append([name, r["storage"], mib(r["weight_bytes"]), mib(r["baseline_rss"]), mib(r["peak_rss"]),
                     f"{net / r['weight_bytes']:.2f}× {'✓' if net / r['weight_bytes'] <= TARGET_MEMORY else '✗'}",
                     mib(r["whole_peak_rss"]), mib(r["written"])])
    out.append(markdown(["model", "storage", "weights", "RSS after imports", "peak RSS in-process",
                         "(peak − imports) / weights", "peak RSS whole process", "bytes written"], rows))
    return "\n\n".join(out)


def tvm_table(tvm: dict) -> str:
    rows = []
    for name, t in tvm.items():
        rows.append([name, f"{min_med(t['cold'])} ({t['cold']['n']}×, {t['jobs']} workers)",
                     f"{len(t['cold_stages'][0])} / {len(t['cold_stages'][1])}", min_med(t["warm"]),
                     f"{len(t['warm_stages'][0])} / {len(t['warm_stages'][1])}",
                     f"{min_med(t['moved'])} (stage {t['moved_stage']} → {t['moved_stage'] + 1})",
                     f"{t['moved_stages'][0]} / {len(t['moved_stages'][1])}", mib(t["module_bytes"]),
                     verified(t["verify"])])
    return markdown(["model", "cold (empty module cache)", "compiled / cached", "same plan again",
                     "compiled / cached", "one place line moved", "rebuilt stages / cached", "modules",
                     "verify (TVM engine)"], rows)


def noise(result: dict, before: tuple, after: tuple) -> str:
    spreads = [r["whole"]["spread"] for r in result["models"].values()]
    spreads += [r["phases"]["total"]["spread"] for r in result["models"].values()]
    return (f"load average (1/5/15 min) before {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}, after "
            f"{after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}; largest spread (max − min) / median of a timed "
            f"series: {max(spreads):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of everything, TVM left out")
    parser.add_argument("--no-tvm", dest="tvm", action="store_false", help="leave out the TVM backend")
    parser.add_argument("--tvm-runs", type=int, default=1, help="cold TVM compiles per model (20–60 s each here)")
    parser.add_argument("--external", action="store_true", help="also time the models stored with external data")
    parser.add_argument("--profile", type=Path, help="write and summarize a cProfile of one compile per model here")
    parser.add_argument("--cache", type=Path, default=zoo.CACHE_DIR)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgec-bench"))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    if runs < 1 or args.tvm_runs < 1:
        parser.error("--runs and --tvm-runs must be at least 1")
    args.work.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()
    print(machine(), flush=True)
    result = bench(args.models, cache=args.cache, work=args.work, runs=runs, external=False)
    if args.external:
        result["external"] = bench(args.models, cache=args.cache, work=args.work, runs=runs, external=True)
    middle = os.getloadavg()
    what = f"{STAGES} stages on {DEVICES} devices, min / median of {runs} run(s), interleaved"
    print(f"\n### Compile time ({what})\n\n{tables(result)}")
    if args.external:
        print(f"\n### The same models stored with external data\n\n{tables(result['external'])}")
    print(f"\nNoise: {noise(result, before, middle)}", flush=True)
    tvm = None if args.quick or not args.tvm else bench_tvm(args.models, cache=args.cache, work=args.work,
                                                            runs=runs, cold_runs=args.tvm_runs)
    after = os.getloadavg()
    if tvm:
        print(f"\n### TVM backend, whole process (`edgec compile … --backend tvm`; min / median)\n\n"
              f"{tvm_table(tvm)}\n\nLoad average after: {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}",
              flush=True)
    if args.profile:
        print(f"\n### Where a whole-process compile spends its time (cProfile, one run)\n\n"
              f"{profile_whole(args.models, cache=args.cache, work=args.work, directory=args.profile)}")
    if args.json:
        args.json.write_text(json.dumps({"result": result, "tvm": tvm, "load": [before, after]}, indent=2,
                                        default=str))
    checks = [r["verify_in_process"] for r in result["models"].values()] + \
             [r["verify_whole"] for r in result["models"].values()] + [t["verify"] for t in (tvm or {}).values()]
    if not all(c and c["ok"] for c in checks):
        raise SystemExit("some compiled outputs do not verify")


if __name__ == "__main__":
    main()
