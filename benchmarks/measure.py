"""Time one edgec compile phase by phase in a fresh process, so its peak RSS belongs to that run alone.

    python benchmarks/measure.py MODEL PLAN OUT [--verify] [--profile FILE]   # prints one JSON line

Why a subprocess per run: `ru_maxrss` is a high-water mark for the whole process, and a
second compile in the same interpreter would also find the first one's caches warm. The
phases are the ones AutoDiCE's figures are compared with: (1) load + constant folding +
shape inference, (2) plan parse + lowering, (3) the pass pipeline — together the front-end —
and (4) writing the ONNX sub-models, the back-end. Verification runs after the peak RSS is
taken and is never timed: a fast compile that is wrong does not count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import edgec
from edgec.backends.artifacts import write_artifacts
from edgec.backends.onnx.source_hash import source_sha256
from edgec.compiler.model_loader import normalize_model, read_model
from edgec.dsl.lower import check_supported, lower_placements, lower_platform
from edgec.dsl.parser import parse_plan
from edgec.passes import default_pipeline

PHASES = ("load", "plan", "passes", "write")


def stage_plan(order: list[str], stages: int, devices: int, *, moved: int | None = None) -> str:
    """`stages` contiguous node ranges (evenly spread in topological order), cycling over `devices`.

    `moved=k` moves the first node of range k + 1 to the end of range k: one `place` line
    changed (and the next one's start), as a user does between two compiles."""
    lines = [f"device dev{d} {{ arch x86_64 cores 2 }}" for d in range(devices)]
    bounds = np.linspace(0, len(order), stages + 1).astype(int)
    if moved is not None:
        bounds[moved + 1] += 1
    for i in range(stages):
        first, last = order[bounds[i]], order[bounds[i + 1] - 1]
        lines.append(f'place "{first}" .. "{last}" on dev{i % devices}.cpu')
    return "\n".join(lines) + "\n"


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rss_now() -> int:
    return _status("VmRSS")


def _peak() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork
    into a child's ru_maxrss across exec, so a parent that built a model would inflate it."""
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compile_phases(model: Path, plan_path: Path, out: Path) -> dict:
    """What `edgec.compile` does, one clock per phase; returns seconds, RSS and sizes."""
    baseline = _rss_now()
    clock = [time.perf_counter()]
    loaded = normalize_model(read_model(model))
    clock.append(time.perf_counter())
    text = plan_path.read_text()
    plan = parse_plan(text, str(plan_path))
    check_supported(plan)
    program = edgec.Program(loaded, lower_platform(plan))
    program.source_path = str(model.resolve())
    lower_placements(plan, program)
    clock.append(time.perf_counter())
    edgec.PassManager(default_pipeline()).run(program)
    clock.append(time.perf_counter())
    peak_front = _peak()
    hash_start = time.perf_counter()
    model_info = {"path": program.source_path, "sha256": source_sha256(model)}
    hash_seconds = time.perf_counter() - hash_start
    plan_info = {"path": plan.filename, "sha256": hashlib.sha256(text.encode()).hexdigest(), "source": text}
    manifest = write_artifacts(program, out, model_info=model_info, plan_info=plan_info)
    clock.append(time.perf_counter())
    return {
        "seconds": dict(zip(PHASES, np.diff(clock).tolist())),
        "hash_seconds": hash_seconds,
        "pass_seconds": {p["pass"]: p["seconds"] for p in program.pass_log},
        "baseline_rss": baseline,
        "peak_front_rss": peak_front,
        "peak_rss": _peak(),
        "nodes": sum(1 for n in program.nodes() if n.domain != "edgec"),
        "stages": len(program.stages),
        "devices": len({s.device for s in program.stages}),
        "transfers": len(program.transfers),
        "written": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        "manifest": manifest,
    }


def child(args: argparse.Namespace) -> dict:
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(compile_phases, args.model, args.plan, args.out)
        profiler.dump_stats(args.profile)
    else:
        result = compile_phases(args.model, args.plan, args.out)
    manifest = result.pop("manifest")
    if args.verify:
        from edgec.runtime.outputs import random_inputs
        from edgec.runtime.verify import verify

        report = verify(args.out, random_inputs(manifest, seed=1))
        result["verify"] = {"ok": report.ok, "max_rel": max(o.max_rel for o in report.outputs)}
    return result


VERIFY = """
import json, sys
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.verify import verify
out, engine = sys.argv[1], sys.argv[2]
report = verify(out, random_inputs(CompiledOutput.open(out).manifest, seed=1), engine=engine)
print(json.dumps({"ok": report.ok, "max_rel": max(o.max_rel for o in report.outputs), "engine": engine}))
"""


def verify_output(out: Path, engine: str = "onnxruntime") -> dict:
    """`edgec verify` of a compiled output in a fresh process (never timed): ok and the max relative error."""
    done = subprocess.run([sys.executable, "-c", VERIFY, str(out), engine], capture_output=True, text=True)
    if done.returncode != 0:
        return {"ok": False, "max_rel": float("nan"), "engine": engine, "error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(model: Path, plan: str, out: Path, *, verify: bool = False, profile: Path | None = None) -> dict:
    """One compile in a fresh interpreter; the output directory is removed afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    plan_path = out.parent / f"{out.name}.edge"
    plan_path.write_text(plan)
    command = [sys.executable, __file__, str(model), str(plan_path), str(out)]
    command += ["--verify"] if verify else []
    command += ["--profile", str(profile)] if profile else []
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compile of {model.name} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)
        plan_path.unlink(missing_ok=True)


def warm_page_cache(model: Path) -> None:
    """Read the model (and any data files beside it) once, so run 1 does not time a cold disk."""
    for path in [model, *model.parent.glob(f"{model.name}.data")]:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def repeat(model: Path, plan: str, out: Path, runs: int, *, verify: bool = True) -> dict:
    """`runs` fresh-process compiles (the first one verified); min/median per phase, max peak RSS."""
    warm_page_cache(model)
    results = [run(model, plan, out, verify=verify and i == 0) for i in range(runs)]
    summary = {key: results[0][key] for key in ("nodes", "stages", "devices", "transfers", "written", "baseline_rss")}
    series = {phase: [r["seconds"][phase] for r in results] for phase in PHASES}
    series["front"] = [sum(r["seconds"][p] for p in PHASES[:3]) for r in results]
    series["back"] = [r["seconds"]["write"] for r in results]
    series["hash"] = [r["hash_seconds"] for r in results]
    for name in results[0]["pass_seconds"]:
        series[f"pass:{name}"] = [r["pass_seconds"][name] for r in results]
    summary["min"] = {k: min(v) for k, v in series.items()}
    summary["median"] = {k: statistics.median(v) for k, v in series.items()}
    summary["peak_rss"] = max(r["peak_rss"] for r in results)
    summary["peak_front_rss"] = max(r["peak_front_rss"] for r in results)
    summary["verify"] = results[0].get("verify")
    summary["runs"] = runs
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the compile to this file")
    print(json.dumps(child(parser.parse_args())))


if __name__ == "__main__":
    main()
