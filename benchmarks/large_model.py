"""Compile a model over 2 GB (external data) and report time, peak memory and bytes written.

    python benchmarks/large_model.py [--gib 2.25] [--dir /tmp/edgec-large] [--verify]

Builds a chain of MatMul layers whose weights live in an external data file, compiles it into
three pipeline stages, and prints a table. Peak RSS is compared with the model's weight bytes:
loading memory-maps the weights and sub-model writing streams them, so edgec should not need
the weights in memory twice.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgec

WIDTH = 8192


def build(directory: Path, gib: float) -> Path:
    path = directory / "large.onnx"
    if path.exists():
        return path
    layers = max(2, int(gib * 2**30 // (WIDTH * WIDTH * 4)) + 1)
    rng = np.random.default_rng(0)
    nodes, weights, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "large", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, WIDTH])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path, save_as_external_data=True, location="large.onnx.data", size_threshold=0)
    return path


def _peak() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would include a parent's RSS at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.25)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgec-large"))
    parser.add_argument("--verify", action="store_true", help="also run edgec verify (loads the weights into onnxruntime)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    model = args.dir / "large.onnx"
    if not model.exists():  # built in a child, so this process's peak RSS is the compile's alone
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import large_model; large_model.build(__import__('pathlib').Path({str(args.dir)!r}), "
                        f"{args.gib})"], check=True)
    weight_bytes = (args.dir / "large.onnx.data").stat().st_size
    layers = len(onnx.load(model, load_external_data=False).graph.node)
    third = layers // 3
    plan = ("device a { cores 1 }\ndevice b { cores 1 }\ndevice c { cores 1 }\n"
            f"place mm0 .. mm{third - 1} on a\nplace mm{third} .. mm{2 * third - 1} on b\nplace * on c\n")
    start = time.perf_counter()
    result = edgec.compile(model, plan, args.dir / "out")
    elapsed = time.perf_counter() - start
    peak = _peak()
    written = sum(p.stat().st_size for p in (args.dir / "out").rglob("*") if p.is_file())
    print(f"{'model weights':<22}{weight_bytes / 2**30:>10.2f} GiB  ({layers} MatMul layers of {WIDTH}x{WIDTH})")
    print(f"{'stages':<22}{len(result.program.stages):>10d}")
    print(f"{'compile time':<22}{elapsed:>10.2f} s")
    print(f"{'peak RSS':<22}{peak / 2**30:>10.2f} GiB  ({peak / weight_bytes:.2f}x the weights)")
    print(f"{'bytes written':<22}{written / 2**30:>10.2f} GiB")
    if args.verify:
        from edgec.runtime.outputs import random_inputs
        from edgec.runtime.verify import verify

        report = verify(args.dir / "out", random_inputs(result.manifest))
        print(f"{'verify':<22}{'ok' if report.ok else 'MISMATCH':>10}  (max rel err {max(o.max_rel for o in report.outputs):.2e})")


if __name__ == "__main__":
    main()
