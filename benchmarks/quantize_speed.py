"""Float vs int8 stage time in onnxruntime, at 1 and 2 threads, and what onnxruntime made of each.

    python benchmarks/quantize_speed.py [--repeats 30] [--skip-trained] [--tvm]

Models: a conv-heavy stage (six 3x3 convolutions, 64 channels at 56x56, ReLU), the two stages of
the trained residual CNN split in the middle (`trained_cnn.py`), and the TorchScript MobileNetV3
of the test corpus. Variants: float; edgec int8 with uint8 activations (what the pass picks for
onnxruntime on x86); edgec int8 with int8 activations (what it picks for TVM, here run in
onnxruntime to measure the activation-type rule); onnxruntime's `quantize_static` (QDQ,
per-channel, uint8 activations). Each timing: `--repeats` runs after 5 warm-ups, min and median;
the `kernels` column lists the integer kernels in onnxruntime's optimized graph
(`SessionOptions.optimized_model_filepath`). `--tvm` also times the conv stack compiled by the TVM
backend (llvm, untuned schedules), float and int8. Target: int8 ≥ 2.5x faster than float at 1 thread
on conv-heavy stages on a CPU with AVX-512 VNNI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1]), str(Path(__file__).parents[1] / "tests")]

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
SPEED_TARGET = 2.5
INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd",
               "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "MatMulIntegerToFloat")


def isa_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(("flags", "Features"))).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return [f for f in ISA_FLAGS if f in flags]


def isa_line() -> str:
    flags = isa_flags()
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni"))
    return f"CPU integer features: {', '.join(flags) or 'none found'} (VNNI: {'yes' if vnni else 'no'})"


def run_times(session, repeats: int, warmup: int = 5) -> list[float]:
    """Seconds per run of `session` (onnxruntime's or the TVM engine's) on fixed non-negative random
    inputs, after `warmup` runs."""
    rng = np.random.default_rng(0)
    feeds = {i.name: np.abs(rng.standard_normal(i.shape)).astype(np.float32) for i in session.get_inputs()}
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return times


def timed(path: Path, threads: int, repeats: int, scratch: Path) -> tuple[float, float, Counter]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    optimized = scratch / f"{path.stem}.{path.parent.name}.opt{threads}.onnx"
    options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    times = run_times(session, repeats)
    kernels = Counter(n.op_type for n in onnx.load(optimized, load_external_data=False).graph.node
                      if n.op_type in INTEGER_OPS)
    return min(times), float(np.median(times)), kernels


def conv_stack(folder: Path) -> tuple[Path, Path]:
    from graphs import Net

    net = Net({"x": [1, 32, 56, 56]})
    prev = "x"
    for i in range(6):
        prev = net.op("Relu", f"r{i}", [net.conv(f"c{i}", prev, 32 if i == 0 else 64, 64)])
    path = folder / "conv_stack.onnx"
    onnx.save(net.model([prev]), path)
    cal = folder / "conv_stack_cal"
    cal.mkdir()
    np.save(cal / "x.npy", np.maximum(np.random.default_rng(1).standard_normal((32, 1, 32, 56, 56)), 0).astype(np.float32))
    return path, cal


def stages_of(model: Path, folder: Path, name: str) -> list[tuple[str, Path]]:
    """The model's two halves (a pipeline split in the middle), each as its own float ONNX file."""
    import edgec

    program = edgec.load_program(model, edgec.load_plan("device a {}\nplace * on a\n"))
    names = program.node_names()
    from edgec.dsl.ast import quote

    plan = f"device a {{}}\ndevice b {{}}\nplace {quote(names[0])} .. {quote(names[len(names) // 2])} on a\nplace * on b\n"
    out = folder / f"{name}_out"
    result = edgec.compile(model, plan, out)
    return [(f"{name} stage {s.rank}", out / s.model) for s in result.manifest.stages]


def stage_calibration(stage_model: Path, model: Path, calibration: Path, folder: Path) -> Path:
    """Calibration inputs of a stage: the float model run to the stage's inputs over the calibration images."""
    import onnxruntime as ort

    wanted = [i.name for i in onnx.load(stage_model, load_external_data=False).graph.input]
    full = onnx.load(model)
    have = {o.name for o in full.graph.output}
    for name in wanted:
        if name not in have:
            full.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0].name
    images = np.load(calibration / "input.npy", mmap_mode="r")[:200]
    outputs = [o.name for o in session.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for image in images:
        got = dict(zip(outputs, session.run(None, {first: np.ascontiguousarray(image[None])})))
        got[first] = image[None]
        for n in wanted:
            collected[n].append(got[n])
    target = folder / f"{stage_model.stem}_cal"
    target.mkdir()
    from edgec.compiler.annotations import calibration_stem

    for n, arrays in collected.items():
        np.save(target / f"{calibration_stem(n)}.npy", np.stack(arrays))
    return target


def tvm_rows(model: Path, calibration: Path, folder: Path, repeats: int) -> list[list]:
    """The conv stack as one TVM stage (llvm, untuned), float and edgec int8 (int8 activations)."""
    import edgec
    from edgec.runtime.outputs import CompiledOutput

    rows, base = [], None
    for label, statement in (("float", ""), ("edgec int8 (int8 act.)", f'quantize a int8 calibrate "{calibration}"\n')):
        out = folder / f"tvm_{len(statement)}"
        edgec.compile(model, "device a {}\nplace * on a\n" + statement, out, backends=("onnx", "tvm"))
        for threads in (1, 2):
            times = run_times(CompiledOutput.open(out).engine_session(0, "tvm", threads=threads), repeats)
            base = base if label != "float" or threads != 1 else min(times)
            rows.append(["conv stack in TVM", label, threads, f"{min(times) * 1e3:.3f}", f"{np.median(times) * 1e3:.3f}",
                         f"{base / min(times):.2f}x (vs 1-thread float)", "TVM QNN (untuned)"])
    return rows


def main() -> None:
    from quantize_accuracy import edgec_quantized, ort_quantized
    from tables import machine, markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--skip-trained", action="store_true")
    parser.add_argument("--tvm", action="store_true", help="also time the conv stack as a TVM stage")
    args = parser.parse_args()
    print(machine())
    print(isa_line())
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-qspeed-") as tmp:
        folder = Path(tmp)
        cases: list[tuple[str, Path, Path]] = [("conv stack 6x(3x3, 64ch, 56x56)", *conv_stack(folder))]
        if args.tvm:
            tvm = tvm_rows(cases[0][1], cases[0][2], folder, args.repeats)
        corpus = Path(__file__).parents[1] / "tests" / "corpus" / "models" / "mobilenetv3_ts.onnx"
        cal = folder / "mnv3_cal"
        cal.mkdir()
        np.save(cal / "input.npy", np.random.default_rng(2).standard_normal((32, 1, 3, 64, 64)).astype(np.float32))
        cases.append(("mobilenetv3_ts (corpus, random inputs)", corpus, cal))
        if not args.skip_trained:
            import trained_cnn

            trained = trained_cnn.trained_model("resnet")
            for label, stage in stages_of(trained.onnx_path, folder, "trained resnet"):
                cases.append((label, stage, stage_calibration(stage, trained.onnx_path, trained.calibration_dir, folder)))
        for label, model, calibration in cases:
            variants = {"float": model}
            variants["edgec int8 (uint8 act.)"] = edgec_quantized(model, calibration, folder / f"{model.stem}_u8.onnx")[0]
            variants["edgec int8 (int8 act.)"] = edgec_quantized(model, calibration, folder / f"{model.stem}_s8.onnx",
                                                                 engine="tvm")[0]
            if len(onnx.load(model, load_external_data=False).graph.input) == 1:
                variants["ort quantize_static"] = ort_quantized(model, calibration, folder / f"{model.stem}_ort.onnx", "MinMax")
            for threads in (1, 2):
                base = None
                for variant, path in variants.items():
                    low, median, kernels = timed(path, threads, args.repeats, folder)
                    base = base or low
                    rows.append([label, variant, threads, f"{low * 1e3:.3f}", f"{median * 1e3:.3f}", f"{base / low:.2f}x",
                                 ", ".join(f"{k} {v}" for k, v in sorted(kernels.items())) or "none"])
    print(f"load average: {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          "(other jobs share this machine)\n")
    print(markdown(["stage", "variant", "threads", "min ms", "median ms", "speed-up (min)", "integer kernels"], rows))
    if args.tvm:
        print("\n" + markdown(["stage", "variant", "threads", "min ms", "median ms", "speed-up (min)", "engine"], tvm))
    print(f"\nTarget: int8 ≥ {SPEED_TARGET}x float at 1 thread on conv-heavy stages (VNNI CPU).")


if __name__ == "__main__":
    main()
