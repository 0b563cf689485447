"""Boundary tensors as float32, float16, int8 and uint8: bytes per frame and what the runtime pays for them.

    python benchmarks/wire_runtime.py [--frames 100] [--repeats 3] [--engine onnxruntime|tvm|cpp]

One two-stage pipeline (x[1,16,56,56] → Conv 16→64 → Relu | Conv 64→16 → GlobalAveragePool),
cut on the 64×56×56 activation, in four versions that differ only in what crosses: the float
tensor itself, or the output of QuantizeLinear (int8, uint8; its DequantizeLinear runs on the
consumer) or of Cast(float16). The Q/DQ pairs are hand-made with a fixed scale (no calibration:
this measures the runtime, not accuracy; the quantize pass's benchmarks measure accuracy). Every
version runs `repeats` times through `edgec run` on this machine (one host, shared-memory MPI),
and the table gives min / median of the throughput and of each stage's compute and send time,
plus the bytes per frame from the manifest and the time those bytes would take on a 100 Mbit/s
link (bytes × 8 / 1e8, computed, not measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import machine, markdown  # noqa: E402

import edgec  # noqa: E402
from edgec.runtime.engines import get_engine  # noqa: E402

WIRES = ("float32", "float16", "int8", "uint8")
PLAN = """
device a { arch x86_64 cores 1 mem 1GiB }
device b { arch x86_64 cores 1 mem 1GiB }
link a <-> b { bandwidth 100Mbit latency 1ms }
place c1 .. cross on a.cpu
place * on b.cpu
"""


def model(wire: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((64, 16, 3, 3)) * 0.1).astype(np.float32), "w1"),
               numpy_helper.from_array((rng.standard_normal((16, 64, 3, 3)) * 0.1).astype(np.float32), "w2")]
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["c1"], name="c1", pads=[1] * 4), node("Relu", ["c1"], ["r1"], name="r1")]
    if wire == "float32":
        nodes.append(node("Identity", ["r1"], ["cross"], name="cross"))
        after = "cross"
    elif wire == "float16":
        nodes += [node("Cast", ["r1"], ["cross"], name="cross", to=TensorProto.FLOAT16),
                  node("Cast", ["cross"], ["back"], name="back", to=TensorProto.FLOAT)]
        after = "back"
    else:
        weights += [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                    numpy_helper.from_array(np.array(0 if wire == "int8" else 128, dtype=wire), "z")]
        nodes += [node("QuantizeLinear", ["r1", "s", "z"], ["cross"], name="cross"),
                  node("DequantizeLinear", ["cross", "s", "z"], ["back"], name="back")]
        after = "back"
    nodes += [node("Conv", [after, "w2"], ["c2"], name="c2", pads=[1] * 4),
              node("GlobalAveragePool", ["c2"], ["gap"], name="gap"), node("Flatten", ["gap"], ["out"], name="out")]
    graph = helper.make_graph(nodes, "wire", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 56, 56])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])], weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def min_med(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "tvm", "cpp"))
    args = parser.parse_args()
    backends = {"onnxruntime": ("onnx",), "tvm": ("tvm",), "cpp": ("cpp",)}[args.engine]
    feeds = {"x": np.random.default_rng(1).standard_normal((4, 1, 16, 56, 56)).astype(np.float32)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-wire-") as tmp:
        for wire in WIRES:
            path = Path(tmp) / f"{wire}.onnx"
            onnx.save(model(wire), path)
            result = edgec.compile(path, PLAN, Path(tmp) / wire, backends=backends)
            (transfer,) = result.manifest.transfers
            fps, compute0, compute1, send0 = [], [], [], []
            for _ in range(args.repeats):
                report = get_engine(args.engine).run(Path(tmp) / wire, feeds, frames=args.frames, warmup=5).report
                fps.append(report["throughput_fps"])
                compute0.append(report["stages"][0]["compute_ms"])
                compute1.append(report["stages"][1]["compute_ms"])
                send0.append(report["stages"][0]["send_ms"])
            rows.append([wire, f"{transfer.nbytes:,}", f"{transfer.nbytes * 8 / 1e8 * 1e3:.1f}", min_med(fps, "{:.1f}"),
                         min_med(compute0), min_med(compute1), min_med(send0, "{:.3f}")])
    print(f"{machine()}; load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())}; engine {args.engine}, "
          f"{args.frames} frames × {args.repeats} runs (min / median)\n")
    print(markdown(["wire", "bytes/frame", "ms at 100 Mbit/s", "frames/s", "stage 0 compute ms",
                    "stage 1 compute ms", "stage 0 send ms"], rows))


if __name__ == "__main__":
    main()
