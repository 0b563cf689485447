"""Accuracy of edgec's int8 quantization on a CNN trained here, beside onnxruntime's `quantize_static`.

    python benchmarks/quantize_accuracy.py [--kind resnet|dwsep] [--calibration 500] [--test N]

The model is `trained_cnn.py`'s (residual blocks + BatchNorm, trained on a real data set an
installed package ships; cached). Every variant is calibrated on the same held-out calibration
images and scored on the same test set: edgec with each method (minmax, percentile, entropy,
mse) with and without bias correction (and equalization for the depthwise-separable model),
and onnxruntime's own `quantize_static` (QDQ, per-channel int8 weights, uint8 activations) with
each of its calibration methods, in the same run. Columns: top-1, its drop from float in points,
predictions that changed from the float model's, and the wall time of the quantization.
Targets (printed beside): top-1 drop ≤ 0.3 points, and fewer changed predictions than
`quantize_static`'s best.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

import trained_cnn  # noqa: E402
from quantize_speed import isa_line  # noqa: E402
from tables import machine, markdown  # noqa: E402

import edgec  # noqa: E402
from edgec.compiler.annotations import calibration_stem  # noqa: E402
from edgec.passes import Canonicalize, Quantize, SplitVertical  # noqa: E402
from edgec.compiler.self_contained import self_contained_proto  # noqa: E402

METHODS = ("minmax", "percentile", "entropy", "mse")
ORT_METHODS = ("MinMax", "Percentile", "Entropy")
DROP_TARGET = 0.3


def edgec_quantized(model: Path, calibration: Path, out: Path, *, method: str = "minmax", extra: str = "",
                    engine: str = "auto", granularity: str = "") -> tuple[Path, edgec.Program]:
    """The model quantized by edgec's pass on one device, written as one self-contained ONNX file."""
    plan = f'device a {{}}\nplace * on a\nquantize a int8 {granularity} calibrate "{calibration}" method {method} {extra}\n'
    program = edgec.compile(model, plan, None, passes=[Canonicalize(), SplitVertical(), Quantize(engine=engine)]).program
    onnx.save(self_contained_proto(program.model), out)
    return out, program


def ort_quantized(model: Path, calibration: Path, out: Path, method: str, activation: str = "uint8") -> Path:
    """onnxruntime's `quantize_static`: QDQ, per-channel int8 weights, its recommended pre-processing."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph_input = onnx.load(model, load_external_data=False).graph.input[0]
    name, shape = graph_input.name, [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    samples = np.load(calibration / f"{calibration_stem(name)}.npy", mmap_mode="r")
    per_sample = int(np.prod(shape))
    samples = samples.reshape(-1, per_sample)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.index = 0

        def get_next(self):
            if self.index >= len(samples):
                return None
            self.index += 1
            return {name: np.ascontiguousarray(samples[self.index - 1], dtype=np.float32).reshape(shape)}

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model), str(pre))
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method))
    return out


def score(model: Path, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None) -> dict:
    logits = trained_cnn.predict(model, images)
    predicted = logits.argmax(axis=1)
    result = {"accuracy": float((predicted == labels).mean()), "logits": logits}
    if reference is not None:
        result["changed"] = int((predicted != reference.argmax(axis=1)).sum())
        result["max_err"] = float(np.abs(logits - reference).max())
    return result


def run(kind: str, calibration: int, test: int | None) -> str:
    trained = trained_cnn.trained_model(kind, calibration=calibration, test=test)
    with np.load(trained.test_npz) as data:
        images, labels = data["input"], data["labels"]
    float_ = score(trained.onnx_path, images, labels, None)
    rows = [["float", "—", f"{100 * float_['accuracy']:.2f}", "—", "—", "—", "—"]]
    results = {}
    variants = [(m, "") for m in METHODS] + [(m, "correct_bias") for m in METHODS]
    if kind == "dwsep":
        variants += [(m, extra) for m in ("minmax", "mse") for extra in ("equalize", "correct_bias equalize")]
    with tempfile.TemporaryDirectory(prefix="edgec-qacc-") as tmp:
        for method, extra in variants:
            start = time.perf_counter()
            label = f"edgec {method}" + (f" + {extra.replace('correct_bias', 'bias corr.')}" if extra else "")
            try:
                path, _ = edgec_quantized(trained.onnx_path, trained.calibration_dir,
                                          Path(tmp) / f"edgec-{method}-{len(extra)}.onnx", method=method, extra=extra)
            except edgec.EdgecError as exc:
                rows.append([label, "—", f"failed: {str(exc).splitlines()[0][:80]}", "", "", "", ""])
                continue
            seconds = time.perf_counter() - start
            results[label] = score(path, images, labels, float_["logits"]) | {"seconds": seconds}
        for method in ORT_METHODS:
            label = f"onnxruntime quantize_static {method}"
            start = time.perf_counter()
            try:
                path = ort_quantized(trained.onnx_path, trained.calibration_dir, Path(tmp) / f"ort-{method}.onnx", method)
            except Exception as exc:  # a benchmark reports a baseline that crashes instead of stopping
                rows.append([label, "—", f"failed: {type(exc).__name__}: {str(exc)[:80]}", "", "", "", ""])
                continue
            results[label] = score(path, images, labels, float_["logits"]) | {"seconds": time.perf_counter() - start}
    n = len(labels)
    for label, r in results.items():
        drop = 100 * (float_["accuracy"] - r["accuracy"])
        rows.append([label, "int8", f"{100 * r['accuracy']:.2f}", f"{drop:+.2f}", f"{r['changed']} ({100 * r['changed'] / n:.2f} %)",
                     f"{r['max_err']:.3f}", f"{r['seconds']:.1f} s"])
    ort_best = min((r["changed"] for k, r in results.items() if k.startswith("onnxruntime")), default=None)
    edgec_best = min(((r["changed"], k) for k, r in results.items() if k.startswith("edgec")), default=None)
    lines = [f"### {kind} on {trained.dataset}: {n} test images, {calibration} calibration images",
             markdown(["variant", "type", "top-1 %", "drop (points)", "changed predictions", "max |logit err|", "quantize time"],
                      rows)]
    if edgec_best is not None:
        best = results[edgec_best[1]]
        drop = 100 * (float_["accuracy"] - best["accuracy"])
        lines.append(f"\nTarget top-1 drop ≤ {DROP_TARGET} points: edgec's fewest-changes variant ({edgec_best[1]}) "
                     f"drops {drop:+.2f} → {'met' if drop <= DROP_TARGET else 'NOT met'}.")
        if ort_best is not None:
            lines.append(f"Target fewer changed predictions than quantize_static's best ({ort_best}): edgec {edgec_best[0]} → "
                         f"{'met' if edgec_best[0] < ort_best else 'NOT met'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=trained_cnn.KINDS, action="append", help="default: resnet")
    parser.add_argument("--calibration", type=int, default=500)
    parser.add_argument("--test", type=int, default=None, help="test images (default: the whole test split)")
    args = parser.parse_args()
    print(machine())
    print(isa_line())
    print(f"load average at start: {os.getloadavg()[0]:.2f}\n")
    for kind in args.kind or ["resnet"]:
        print(run(kind, args.calibration, args.test) + "\n")


if __name__ == "__main__":
    main()
