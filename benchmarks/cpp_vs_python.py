"""Throughput of the generated C++/MPI program against the Python runtime on the same plan.

    python benchmarks/cpp_vs_python.py [--frames 200] [--warmup 10] [--models tiny_cnn squeezenet] [--work DIR]

Why: the C++ program exists so a board needs no Python; this shows what that costs or gains.
Each model is compiled once (ONNX sub-models + TVM modules + the C++ program), then run with
`edgec.runtime.launcher.run` (Python ranks: onnxruntime, and TVM modules where the launcher
offers that engine) and with `edgec.runtime.cpp_engine.run`, same frames, same inputs, one
process per stage on this machine. Outputs of every engine are checked against each other.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples")]

import edgec  # noqa: E402
from edgec.backends.cpp_mpi import build, write_cpp  # noqa: E402
from edgec.backends.tvm import compile_directory  # noqa: E402
from edgec.runtime import cpp_engine, launcher  # noqa: E402
from edgec.runtime.outputs import random_inputs  # noqa: E402
from tables import markdown  # noqa: E402


def compiled(name: str, work: Path) -> Path:
    out = work / f"{name}-out"
    if (out / "build" / "edgec_pipeline").is_file():
        return out
    if name == "tiny_cnn":
        from tiny_cnn import build as build_tiny

        model = work / "tiny_cnn.onnx"
        onnx.save(build_tiny(), model)
        edgec.compile(model, (ROOT / "examples" / "tiny_cnn.edge").read_text(), out)
    else:
        from zoo import randomized, range_plan

        model = randomized(name, work)
        order = [node.name for node in edgec.load_model(model).graph]
        edgec.compile(model, range_plan(order, stages=3, devices=("a", "b")), out)
    compile_directory(out)
    write_cpp(out)
    build(out)
    return out


def engines() -> list[tuple[str, object]]:
    runs = [("python/onnxruntime", lambda out, feeds, **kw: launcher.run(out, feeds, **kw))]
    if "engine" in inspect.signature(launcher.run).parameters:
        runs.append(("python/tvm", lambda out, feeds, **kw: launcher.run(out, feeds, engine="tvm", **kw)))
    runs.append(("c++/tvm", lambda out, feeds, **kw: cpp_engine.run(out, feeds, **kw)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=["tiny_cnn", "squeezenet"])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgec-cpp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        out = compiled(name, work)
        manifest = edgec.runtime.outputs.CompiledOutput.open(out).manifest
        feeds = random_inputs(manifest, seed=0)
        first = None
        for label, run in engines():
            result = run(out, feeds, frames=args.frames, warmup=args.warmup, keep_outputs=True)
            report = result.report
            outputs = np.concatenate([a.reshape(-1) for a in result.outputs.values()])
            first = outputs if first is None else first
            err = float(np.max(np.abs(outputs - first)) / (np.max(np.abs(first)) or 1.0))
            slowest = max(s["compute_ms"] for s in report["stages"])
            rows.append([name, len(manifest["stages"]), label, f"{report['throughput_fps']:.0f}",
                         f"{report['latency_ms']['p50']:.2f}", f"{slowest:.3f}", f"{report['efficiency']:.2f}",
                         f"{err:.1e}"])
    print(markdown(["model", "stages", "engine", "frames/s", "p50 ms", "slowest stage ms", "efficiency",
                    "rel err vs first"], rows))


if __name__ == "__main__":
    main()
