"""Bytes on the wire for float / fp16 / int8 / uint8 boundary tensors, and what each costs in accuracy.

    python benchmarks/wire_formats.py [--test N]

The trained residual CNN (`trained_cnn.py`) split into two stages in the middle; the layers stay
float and only the tensors crossing the link are quantized (`quantize wire …`, scales from the
calibration images). Each plan is compiled, its stages run one after the other from the output
directory in onnxruntime (what `edgec verify` does), over the test set. Columns: bytes per frame
on the link (from `program.transfers`), the ratio to float, top-1, its drop in points, changed
predictions. Target: int8 carries 4x fewer bytes per frame than float.
(`wire_runtime.py` measures what the runtime pays for each format; this one measures accuracy.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

import trained_cnn  # noqa: E402
from quantize_speed import isa_line  # noqa: E402
from tables import machine, markdown  # noqa: E402

import edgec  # noqa: E402
from edgec.dsl.ast import quote  # noqa: E402
from edgec.runtime.outputs import CompiledOutput  # noqa: E402
from edgec.runtime.verify import run_stages  # noqa: E402

FORMATS = ("float", "fp16", "int8", "uint8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=int, default=2000, help="test images scored (default 2000)")
    args = parser.parse_args()
    print(machine())
    print(isa_line())
    print(f"load average at start: {os.getloadavg()[0]:.2f}\n")
    trained = trained_cnn.trained_model("resnet")
    with np.load(trained.test_npz) as data:
        images, labels = data["input"][:args.test], data["labels"][:args.test]
    program = edgec.load_program(trained.onnx_path, edgec.load_plan("device a {}\nplace * on a\n"))
    names = program.node_names()
    places = f"device a {{}}\ndevice b {{}}\nplace {quote(names[0])} .. {quote(names[len(names) // 2])} on a\nplace * on b\n"
    rows, base_bytes, base_pred = [], None, None
    with tempfile.TemporaryDirectory(prefix="edgec-wire-") as tmp:
        for wire in FORMATS:
            clause = "" if wire == "float" else f"quantize wire {wire}" + (
                "" if wire == "fp16" else f' calibrate "{trained.calibration_dir}"')
            out = Path(tmp) / wire
            result = edgec.compile(trained.onnx_path, places + clause + "\n", out)
            frame = sum(t.nbytes for t in result.program.transfers)
            compiled = CompiledOutput.open(out)
            sessions = [compiled.engine_session(s.rank, "onnxruntime") for s in compiled.stages]
            name = result.manifest.model.inputs[0].name
            output = result.manifest.model.outputs[0].name
            logits = np.concatenate([run_stages(compiled, {name: image[None]}, sessions=sessions)[output] for image in images])
            predicted = logits.argmax(axis=1)
            base_bytes = base_bytes or frame
            base_pred = predicted if base_pred is None else base_pred
            accuracy = float((predicted == labels).mean())
            rows.append([wire, ", ".join(sorted({t.dtype for t in result.program.transfers})), frame,
                         f"{base_bytes / frame:.2f}x", f"{100 * accuracy:.2f}",
                         f"{100 * (float((base_pred == labels).mean()) - accuracy):+.2f}",
                         int((predicted != base_pred).sum())])
    print(f"### trained {trained.kind} on {trained.dataset}, 2 stages, {len(labels)} test images")
    print(markdown(["wire", "boundary dtype", "bytes / frame", "fewer bytes than float", "top-1 %", "drop (points)",
                    "changed predictions"], rows))
    print("\nTarget: int8 wire carries 4x fewer bytes per frame than float.")


if __name__ == "__main__":
    main()
