"""Quantized stages on TVM: integer kernels vs onnxruntime's int8 kernels vs TVM's float path.

    python benchmarks/tvm_int8.py [--model resnet50] [--rounds 7] [--threads 1] [--layers 6]
                                  [--target TARGET] [--cache DIR] [--no-stage]

The model (light zoo, random weights, upgraded to opset 13) is quantized by edgec's pass for TVM
(`quantize a int8 calibrate DIR`: int8 activations, 8 random calibration samples) as one stage.
The same QDQ model runs in three engines, in one process, on the same input: onnxruntime (which
fuses the QDQ patterns into QLinearConv/QGemm), TVM with the integer lowering (`int8_lowering.py`,
forced with `int8=True`; the default uses it on x86 and on aarch64 with dotprod) and
TVM with it switched off (`int8=False`: dequantized weights folded, float convs). The
`onnxruntime (u8 act.)` column runs the model quantized for onnxruntime instead (uint8
activations, which its x86 kernels are built around). Per layer: the first `--layers` distinct
quantized convolutions, each cut out of the quantized model (int8 in, int8 out, between its
input's and its output's quantized tensors). The stage is cut after its last QuantizeLinear (the
int8 logits): a random-weight model's Softmax output is saturated, which would hide differences.
Timing as in `tvm_stage_times.py`: per engine a 1 s pause, 3 untimed runs, then `rounds` rounds of
3 runs; min and median of the rounds. `max diff`: the largest difference of the int8 outputs in
quantization steps against onnxruntime on the same (s8) model. The header and footer print the
load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]  # tests/zoo.py before benchmarks/zoo.py

WARMUP, PAUSE = 3, 1.0


def opset13(path: Path) -> Path:
    """`path` upgraded to opset 13 (the light zoo is opset 9, whose converter wants every
    initializer listed as a graph input, as IR version 3 did; they are removed again after)."""
    proto = onnx.load(path)
    if next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 13:
        return path
    listed = {i.name for i in proto.graph.input}
    extra = [onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in proto.graph.initializer
             if t.name not in listed]
    proto.graph.input.extend(extra)
    proto = onnx.version_converter.convert_version(proto, 13)
    names = {v.name for v in extra}
    kept = [i for i in proto.graph.input if i.name not in names]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    out = path.with_name(f"{path.stem}_opset13.onnx")
    onnx.save(proto, out)
    return out


def quantized_model(name: str, folder: Path, engine: str = "tvm") -> Path:
    """The zoo model with random weights, quantized by edgec's pass for `engine` as one stage
    (TVM: int8 activations; onnxruntime: uint8, what the pass picks for it on x86)."""
    from zoo import randomized  # tests/zoo.py: import before quantize_accuracy puts benchmarks/ first

    from quantize_accuracy import edgec_quantized

    model = opset13(randomized(name, folder))
    graph_input = onnx.load(model, load_external_data=False).graph.input[0]
    shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    calibration = folder / "calibration"
    calibration.mkdir(exist_ok=True)
    from edgec.compiler.annotations import calibration_stem

    rng = np.random.default_rng(1)
    samples = rng.standard_normal((8, *shape)).astype(np.float32)
    np.save(calibration / f"{calibration_stem(graph_input.name)}.npy", samples)
    return edgec_quantized(model, calibration, folder / f"{name}_{engine}_int8.onnx", engine=engine)[0]


def layer_models(model: Path, folder: Path, count: int, names: list[str] | None = None,
                 tag: str = "") -> list[tuple[str, str, Path]]:
    """The first `count` quantized Convs with distinct shapes (or the Convs `names`), each as its
    own QDQ model: (node name, label, path)."""
    proto = onnx.load(model)
    producer = {o: n for n in proto.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    inferred = onnx.shape_inference.infer_shapes(proto)
    extractor = onnx.utils.Extractor(inferred)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    layers, seen = [], set()
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(layers) >= count or (names is not None and node.name not in names):
            continue
        dq = producer.get(node.input[0])
        after = readers.get(node.output[0], [])
        if after and after[0].op_type == "Relu":
            after = readers.get(after[0].output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        weight = next(i for i in proto.graph.initializer if i.name == producer[node.input[1]].input[0])
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        key = (tuple(weight.dims), tuple(attrs.get("strides", [1, 1])), tuple(shapes.get(node.input[0], [])))
        if key in seen and names is None:
            continue
        seen.add(key)
        path = folder / f"layer{len(layers)}{tag}.onnx"
        onnx.save(extractor.extract_model([dq.input[0]], [after[0].output[0]]), path)
        label = (f"{node.name}: {weight.dims[1]}->{weight.dims[0]} {weight.dims[2]}x{weight.dims[3]}"
                 f" s{key[1][0]} @{key[2][2] if len(key[2]) > 2 else '?'}")
        layers.append((node.name, label, path))
    return layers


def to_last_quantized(model: Path) -> Path:
    """`model` cut after its last QuantizeLinear (ResNet-50: the int8 logits, before the DQ and
    Softmax): a random-weight model's softmax saturates, which would hide any difference."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(model))
    last = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"][-1]
    out = model.with_name(f"{model.stem}_to_int8.onnx")
    onnx.save(onnx.utils.Extractor(proto).extract_model([i.name for i in proto.graph.input], [last.output[0]]), out)
    return out


def tvm_session(model: Path, target, int8: bool, out: Path, threads: int):
    import tvm

    from edgec.backends.tvm.frontend import import_onnx
    from edgec.backends.tvm.lowering import cpu_build_pipeline
    from edgec.runtime.tvm_stage import TvmSession

    pipeline = cpu_build_pipeline(target, int8=int8)
    executable = tvm.compile(import_onnx(model, None, "bench"), target, relax_pipeline=pipeline)
    executable.export_library(str(out))
    return TvmSession.from_onnx(out, model, threads=threads)


def ort_session(model: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def feeds_for(session, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        if i.type == "tensor(int8)":
            feeds[i.name] = rng.integers(-128, 128, i.shape).astype(np.int8)
        elif i.type == "tensor(uint8)":
            feeds[i.name] = rng.integers(0, 256, i.shape).astype(np.uint8)
        else:
            feeds[i.name] = rng.standard_normal(i.shape).astype(np.float32)
    return feeds


def timed(session, feeds, rounds: int) -> list[float]:
    time.sleep(PAUSE)
    for _ in range(WARMUP):
        session.run(None, feeds)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(3):
            session.run(None, feeds)
        samples.append((time.perf_counter() - start) / 3)
    return samples


def output_scale(model: Path) -> float:
    """The scale of the DequantizeLinear that produces the first graph output (1.0 if none)."""
    proto = onnx.load(model)
    out = proto.graph.output[0].name
    node = next((n for n in proto.graph.node if out in n.output), None)
    if node is None or node.op_type != "DequantizeLinear":
        return 1.0
    init = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    return float(init[node.input[1]].reshape(-1)[0]) if node.input[1] in init else 1.0


def compare(label: str, model: Path, u8_model: Path | None, target, threads: int, rounds: int,
            folder: Path) -> list[str]:
    ort_s = ort_session(model, threads)
    feeds = feeds_for(ort_s)
    sessions = {"ort": ort_s}
    compile_s = {}
    for key, int8 in (("int8", True), ("float", False)):
        start = time.perf_counter()
        sessions[key] = tvm_session(model, target, int8, folder / f"{model.stem}_{key}.so", threads)
        compile_s[key] = time.perf_counter() - start
    expected = ort_s.run(None, feeds)[0]
    step = 1.0 if expected.dtype != np.float32 else output_scale(model)
    relative = expected.dtype == np.float32 and step == 1.0
    if relative:
        step = float(np.max(np.abs(expected))) or 1.0
    errors = {k: float(np.max(np.abs(sessions[k].run(None, feeds)[0].astype(np.float64) - expected))) / step
              for k in ("int8", "float")}
    times = {k: timed(s, feeds, rounds) for k, s in sessions.items()}
    if u8_model is not None:
        u8 = ort_session(u8_model, threads)
        times["ort_u8"] = timed(u8, feeds_for(u8), rounds)
    cell = lambda k: f"{min(times[k]) * 1e3:.3f} / {np.median(times[k]) * 1e3:.3f}"  # noqa: E731
    err = (lambda k: f"{errors[k]:.1e}") if relative else (lambda k: f"{errors[k]:.0f}")  # noqa: E731
    return [label, cell("ort"), cell("ort_u8") if "ort_u8" in times else "-", cell("int8"), cell("float"),
            f"{min(times['float']) / min(times['int8']):.2f}x", f"{min(times['int8']) / min(times['ort']):.2f}x",
            f"{err('int8')} / {err('float')}" + (" (rel)" if relative else ""),
            f"{compile_s['int8']:.1f} / {compile_s['float']:.1f}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--target", default=None, help="TVM target string (default: the host's)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgec-bench")
    parser.add_argument("--no-stage", action="store_true", help="per-layer rows only")
    args = parser.parse_args(argv)
    import tvm

    from edgec.backends.tvm.isa import isa_of
    from edgec.backends.tvm.targets import _cpu_target, parse_target
    from tvm_stage_times import cpu_description

    target = tvm.target.Target(parse_target(args.target)) if args.target else tvm.target.Target(_cpu_target("x86_64"))
    isa = isa_of(target)
    load_before = os.getloadavg()
    print(f"CPU: {cpu_description()}\nTVM target: {target} · ISA {isa.name}, int8 dot: {isa.int8_dot or 'none'}")
    print(f"threads {args.threads}, {args.rounds} rounds of 3 runs, min / median in ms\n")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-tvm-int8-") as tmp:
        folder = Path(tmp)
        model = quantized_model(args.model, args.cache)
        u8_model = quantized_model(args.model, args.cache, "onnxruntime")
        layers = layer_models(model, folder, args.layers)
        u8_layers = {name: path for name, _, path in layer_models(u8_model, folder, args.layers,
                                                                   [n for n, _, _ in layers], "_u8")}
        for name, label, path in layers:
            rows.append(compare(label, path, u8_layers.get(name), target, args.threads, args.rounds, folder))
            print(" | ".join(rows[-1]), file=sys.stderr)
        if not args.no_stage:
            rows.append(compare(f"{args.model} to the int8 logits (one stage)", to_last_quantized(model),
                                to_last_quantized(u8_model), target, args.threads, args.rounds, folder))
    header = ["layer / stage", "onnxruntime (s8 act.)", "onnxruntime (u8 act.)", "TVM int8", "TVM float (QDQ)",
              "int8 vs float", "TVM int8 / ort s8", "max diff int8 / float", "compile s int8 / float"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
