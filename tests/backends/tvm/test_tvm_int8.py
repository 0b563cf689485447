"""Quantized stages compile to integer kernels (int8_lowering.py) and match onnxruntime.

Each tiny graph is quantized by edgec's pass for TVM (int8 activations, per-channel int8 weights,
int32 biases, random calibration data), compiled for a target string and run against onnxruntime
on the same QDQ model. The bound: int8 outputs within 1 quantization step (both compute the same
int32 accumulator; only a float rounding tie can differ), so a dequantized output within one
output scale. Targets: the x86 AVX-512 VNNI target (`vpdpbusd` in the module), AVX2 (no int8 dot
instruction: `pmaddwd` on int16; this host executes both) and aarch64 with +dotprod (`sdot` in the
module, run under qemu-user like test_tvm_cross.py's stage); NEON without dotprod keeps the float
path by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm_helpers import aarch64_runtime, ort_run, random_feeds

import edgec
from edgec.backends.tvm.frontend import import_onnx
from edgec.backends.tvm.int8_lowering import find_layers
from edgec.backends.tvm.int8_schedules import schedule_int8_conv
from edgec.backends.tvm.lowering import cpu_build_pipeline, fused_module
from edgec.backends.tvm.targets import _cpu_target, parse_target
from edgec.compiler.self_contained import self_contained_proto
from edgec.passes import Canonicalize, Quantize, SplitVertical
from edgec.runtime.tvm_stage import TvmSession

TARGETS = {
    "avx512-vnni": (None, "vpdpbusd"),
    "avx2": ('{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}', "pmaddwd"),
    "aarch64-dotprod": ("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod", "sdot"),
}


def _graph(path: Path, nodes, shape, weights, opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, n) for n, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(onnx.shape_inference.infer_shapes(model), path)
    return path


def conv_chain(path: Path) -> tuple[Path, int]:
    """Conv 3x3 stride 2 + bias + Relu, then a 1x1 Conv + bias: two int8-in, int8-out layers."""
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    weights = {"w1": normal(16, 8, 3, 3), "b1": normal(16), "w2": normal(32, 16, 1, 1), "b2": normal(32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]), helper.make_node("Conv", ["r1", "w2", "b2"], ["y"])]
    return _graph(path, nodes, [1, 8, 9, 9], weights), 2


def conv_gemm(path: Path) -> tuple[Path, int]:
    """A 3-channel first conv (channels padded to 4) + Relu, Flatten, then Gemm (transB) with a float output."""
    rng = np.random.default_rng(1)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    weights = {"w": normal(16, 3, 3, 3), "gw": normal(10, 16 * 4 * 4), "gb": normal(10)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], transB=1)]
    return _graph(path, nodes, [1, 3, 4, 4], weights), 2


def matmul(path: Path) -> tuple[Path, int]:
    """MatMul by a [K, N] weight (per-column scales), then a Relu-free float output."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    return _graph(path, nodes, [2, 24], {"w": rng.standard_normal((24, 16)).astype(np.float32)}), 1


GRAPHS = {"conv_chain": conv_chain, "conv_gemm": conv_gemm, "matmul": matmul}


def quantize(model: Path, tmp: Path, dtype: str = "int8", granularity: str = "") -> Path:
    """`model` quantized by edgec's pass for the TVM engine, as one self-contained ONNX file."""
    proto = onnx.load(model)
    name = proto.graph.input[0].name
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    cal = tmp / "cal"
    cal.mkdir(exist_ok=True)
    np.save(cal / f"{name}.npy", np.random.default_rng(3).standard_normal((8, *shape)).astype(np.float32))
    plan = f'device a {{}}\nplace * on a\nquantize a {dtype} {granularity} calibrate "{cal}"\n'
    program = edgec.compile(model, plan, None, passes=[Canonicalize(), SplitVertical(), Quantize(engine="tvm")]).program
    out = tmp / f"{model.stem}_{dtype}{granularity}.onnx"
    onnx.save(self_contained_proto(program.model), out)
    return out


def output_scale(model: Path) -> float:
    proto = onnx.load(model)
    node = next(n for n in proto.graph.node if proto.graph.output[0].name in n.output)
    if node.op_type != "DequantizeLinear":
        return 0.0
    return float(numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == node.input[1])))


def compile_and_run(model: Path, target_text: str | None, tmp: Path, *, int8: bool | None = True):
    target = tvm.target.Target(parse_target(target_text) if target_text else _cpu_target("x86_64"))
    pipeline = cpu_build_pipeline(target, int8=int8)
    executable = tvm.compile(import_onnx(model, None, "test"), target, relax_pipeline=pipeline)
    fcompile = None
    if "aarch64" in str(target):
        aarch64_runtime()
        fcompile = tvm.support.cc.cross_compiler("aarch64-linux-gnu-g++")
    so = tmp / f"{model.stem}_{int8}.so"
    executable.export_library(str(so), fcompile=fcompile)
    feeds = random_feeds(model)
    got = TvmSession.from_onnx(so, model, threads=1).run(None, feeds)
    return got, ort_run(model, feeds), executable.mod.imports[0].inspect_source("ll")


def assert_scheduled(model: Path, target_text: str | None) -> None:
    """Every integer kernel gets the int8 schedule (a failing schedule would silently leave the
    kernel unscheduled, correct but many times slower)."""
    target = tvm.target.Target(parse_target(target_text) if target_text else _cpu_target("x86_64"))
    fused = fused_module(import_onnx(model, None, "test"), target, int8=True)
    kernels = [f for g, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "_int8" in g.name_hint]
    assert kernels and all(schedule_int8_conv(f, target) is not None for f in kernels)


def _assert_close(model: Path, got, want) -> None:
    step = output_scale(model)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        bound = step * 1.001 if step else 1e-5 * float(np.max(np.abs(w)))
        assert float(np.max(np.abs(g.astype(np.float64) - w))) <= bound


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_quantized_layers_become_integer_kernels_and_match_onnxruntime(tmp_path, graph, target) -> None:
    model, layers = GRAPHS[graph](tmp_path / f"{graph}.onnx")
    quantized = quantize(model, tmp_path)
    assert len(find_layers(import_onnx(quantized, None, "test")["main"])) == layers
    target_text, instruction = TARGETS[target]
    assert_scheduled(quantized, target_text)
    got, want, llvm_ir = compile_and_run(quantized, target_text, tmp_path)
    _assert_close(quantized, got, want)
    assert "int8_nhwc" in llvm_ir or "conv2d_int8" in llvm_ir or "dense_int8" in llvm_ir
    if instruction == "vpdpbusd":
        assert "llvm.x86.avx512.vpdpbusd" in llvm_ir
    elif instruction == "sdot":
        assert "llvm.aarch64.neon.sdot" in llvm_ir
    else:
        assert "llvm.x86.avx2.pmadd.wd" in llvm_ir and "vpdpbusd" not in llvm_ir


@pytest.mark.parametrize("mcpu, instruction", [("alderlake", "llvm.x86.avx512.vpdpbusd.256"),
                                               ("skylake-avx512", "llvm.x86.avx512.pmaddw.d.512")])
def test_other_x86_targets_compile_to_their_kernels(tmp_path, mcpu, instruction) -> None:
    """AVX-VNNI (8-lane `vpdpbusd` on ymm; this host lacks it, so compiled only) and AVX-512 without
    VNNI (16-lane `pmaddwd` on int16; not `vpmaddubsw`, whose int16 sums saturate)."""
    model, _ = conv_chain(tmp_path / "chain.onnx")
    quantized = quantize(model, tmp_path)
    text = f'{{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "{mcpu}"}}'
    assert_scheduled(quantized, text)
    target = tvm.target.Target(parse_target(text))
    executable = tvm.compile(import_onnx(quantized, None, "test"), target,
                             relax_pipeline=cpu_build_pipeline(target, int8=True))
    llvm_ir = executable.mod.imports[0].inspect_source("ll")
    assert "conv2d_int8" in llvm_ir and instruction in llvm_ir and "pmaddubs" not in llvm_ir


def test_uint8_activations_are_shifted_and_match(tmp_path) -> None:
    """A plan that asks for uint8 activations: on x86 the data is uint8 already; on aarch64 (sdot,
    signed) it is shifted by -128 with its zero point."""
    model, _ = conv_chain(tmp_path / "chain.onnx")
    quantized = quantize(model, tmp_path, "uint8")
    assert len(find_layers(import_onnx(quantized, None, "test")["main"])) == 2
    for target_text, _ in (TARGETS["avx512-vnni"], TARGETS["aarch64-dotprod"]):
        got, want, _ = compile_and_run(quantized, target_text, tmp_path)
        _assert_close(quantized, got, want)


def test_per_tensor_weight_scales_match(tmp_path) -> None:
    model, _ = conv_gemm(tmp_path / "conv_gemm.onnx")
    quantized = quantize(model, tmp_path, granularity="per_tensor")
    assert len(find_layers(import_onnx(quantized, None, "test")["main"])) == 2
    got, want, _ = compile_and_run(quantized, None, tmp_path)
    _assert_close(quantized, got, want)


def test_unsupported_layers_keep_the_float_path(tmp_path) -> None:
    """A grouped conv (depthwise) and a weight with a non-zero zero point are not rewritten; the
    stage still compiles and matches onnxruntime. (Irregular scales: TVM's float `quantize` rounds
    ties away from zero, ONNX to even, so scales like 0.05 x 0.01 / 0.1 make the float path differ.)"""
    rng = np.random.default_rng(4)
    weights = {"wq": rng.integers(-127, 128, (8, 1, 3, 3)).astype(np.int8),
               "ws": rng.uniform(0.005, 0.02, 8).astype(np.float32),
               "wz": np.zeros(8, np.int8), "xs": np.array(0.0473, np.float32), "xz": np.array(3, np.int8),
               "vq": rng.integers(-127, 128, (8, 8, 1, 1)).astype(np.int8), "vs": np.array(0.0217, np.float32),
               "vz": np.array(5, np.int8), "ys": np.array(0.0931, np.float32), "yz": np.array(0, np.int8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["cd"]),
             helper.make_node("DequantizeLinear", ["vq", "vs", "vz"], ["vd"]),
             helper.make_node("Conv", ["cd", "vd"], ["y"])]
    model = _graph(tmp_path / "fallback.onnx", nodes, [1, 8, 6, 6], weights)
    assert find_layers(import_onnx(model, None, "test")["main"]) == {}
    got, want, _ = compile_and_run(model, None, tmp_path)
    assert float(np.max(np.abs(got[0] - want[0]))) <= 1e-4 * float(np.max(np.abs(want[0])))


def test_integer_kernels_agree_with_the_float_path(tmp_path) -> None:
    """The same QDQ stage compiled with and without the rewrite: within one output step."""
    model, _ = conv_chain(tmp_path / "chain.onnx")
    quantized = quantize(model, tmp_path)
    integer, _, _ = compile_and_run(quantized, None, tmp_path)
    floating, _, llvm_ir = compile_and_run(quantized, None, tmp_path, int8=False)
    assert "vpdpbusd" not in llvm_ir
    _assert_close(quantized, integer, floating)


def test_by_default_targets_with_an_integer_dot_product_get_integer_kernels(tmp_path) -> None:
    """x86 (VNNI, or pmaddwd on AVX2) does; aarch64 NEON without dotprod keeps the float path."""
    model, _ = conv_chain(tmp_path / "chain.onnx")
    quantized = quantize(model, tmp_path)
    for target_text, integer in ((None, True), (TARGETS["avx2"][0], True),
                                 ("llvm -mtriple=aarch64-linux-gnu -mattr=+neon", False)):
        got, want, llvm_ir = compile_and_run(quantized, target_text, tmp_path, int8=None)
        assert ("conv2d_int8" in llvm_ir) is integer
        _assert_close(quantized, got, want)
