"""The C++/MPI program with boundary, input and output tensors of int8, uint8, float16 (and bool, int64).

Why: a quantized plan sends its int8/uint8/fp16 tensors between devices, and a board runs the
C++ program, so its buffers, MPI messages (raw bytes of the element type) and .npy reader and
writer must take every such type. Built with CMake and run under mpirun (slow), compared with
onnxruntime on the unsplit model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.backends.cpp_mpi.codegen import generate_main
from edgec.compiler.diagnostics import UsageError
from edgec.runtime import cpp_engine
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import run_reference, verify
from graphs import Net
from quantized_graphs import compile_quantized


def narrow_io() -> onnx.ModelProto:
    """int8 input x → dequantize → Relu → Cast(float16) h |a→b| Cast(float) → quantize (uint8) y |b→c|
    dequantize → out: int8 in, float16 and uint8 across, uint8 and float32 out."""
    node = helper.make_node
    nodes = [node("DequantizeLinear", ["x", "s", "z8"], ["d"], name="d"), node("Relu", ["d"], ["r"], name="r"),
             node("Cast", ["r"], ["h"], name="h", to=TensorProto.FLOAT16),
             node("Cast", ["h"], ["f"], name="f", to=TensorProto.FLOAT),
             node("QuantizeLinear", ["f", "s", "zu"], ["y"], name="y"),
             node("DequantizeLinear", ["y", "s", "zu"], ["out"], name="out")]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(3, np.int8), "z8"),
             numpy_helper.from_array(np.array(128, np.uint8), "zu")]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 16]),
                               helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


NARROW_PLAN = """
device a { arch x86_64 cores 1 mem 1GiB }
device b { arch x86_64 cores 1 mem 1GiB }
device c { arch x86_64 cores 1 mem 1GiB }
link a <-> b { bandwidth 100Mbit latency 1ms }
link b <-> c { bandwidth 100Mbit latency 1ms }
place [d, r, h] on a.cpu
place [f, y] on b.cpu
place * on c.cpu
"""


def test_generated_program_declares_each_element_type(tmp_path):
    out = compile_quantized(tmp_path / "int8", "int8", quantized=False)
    text = generate_main(out)
    assert 'stage.result("q", edgec::i8, {1, 4, 8, 8});' in text
    assert 'stage.param("q", edgec::i8, {1, 4, 8, 8});' in text
    onnx.save(narrow_io(), tmp_path / "narrow.onnx")
    edgec.compile(tmp_path / "narrow.onnx", NARROW_PLAN, tmp_path / "narrow")
    text = generate_main(tmp_path / "narrow")
    for declared in ('stage.param("x", edgec::i8, {1, 16});', 'stage.result("h", edgec::f16, {1, 16});',
                     'stage.result("y", edgec::u8, {1, 16});'):
        assert declared in text


def test_a_type_the_program_cannot_hold_is_named(tmp_path):
    net = Net({"x": [1, 4]})
    net.op("Cast", "wide", ["x"], to=TensorProto.DOUBLE)
    net.op("Cast", "out", ["wide"], to=TensorProto.FLOAT)
    onnx.save(net.model(["out"]), tmp_path / "m.onnx")
    plan = NARROW_PLAN.replace("[d, r, h]", "wide").replace("place [f, y] on b.cpu\n", "")
    edgec.compile(tmp_path / "m.onnx", plan, tmp_path / "out")
    with pytest.raises(UsageError, match="tensor 'wide' is float64; the C\\+\\+ backend supports float32, float16, "
                                         "int8, uint8, int32, int64, bool only"):
        generate_main(tmp_path / "out")


def _run_and_compare(out, feeds: dict[str, np.ndarray], frames: int) -> None:
    result = cpp_engine.run(out, feeds, frames=frames, warmup=1, keep_outputs=True, timeout=120)
    compiled = CompiledOutput.open(out)
    names = [spec.name for spec in compiled.manifest.model.outputs]
    samples = len(next(iter(feeds.values())))
    for j in range(frames):
        expected = run_reference(compiled.reference_model(), {n: a[j % samples] for n, a in feeds.items()}, names)
        for name in names:
            got = result.outputs[name][j]
            assert got.dtype == expected[name].dtype, name
            np.testing.assert_allclose(got.astype(np.float64), expected[name].astype(np.float64), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name} frame {j}")


@pytest.mark.slow
def test_cpp_program_sends_an_int8_tensor(tmp_path):
    out = compile_quantized(tmp_path / "q", "int8", quantized=False, backends=("cpp",))
    frames = np.random.default_rng(2).standard_normal((3, 1, 3, 8, 8)).astype(np.float32)
    _run_and_compare(out, {"x": frames}, frames=5)
    np.savez(tmp_path / "data.npz", x=frames[:, 0], labels=np.arange(3) % 4)
    report = verify(out, engine="cpp", dataset=tmp_path / "data.npz")
    assert report.ok and report.dataset.samples == 3 and report.dataset.changed == 0


@pytest.mark.slow
def test_cpp_program_reads_int8_sends_float16_and_uint8_writes_uint8(tmp_path):
    onnx.save(narrow_io(), tmp_path / "narrow.onnx")
    edgec.compile(tmp_path / "narrow.onnx", NARROW_PLAN, tmp_path / "out", backends=("cpp",))
    frames = np.random.default_rng(3).integers(-128, 128, (3, 1, 16)).astype(np.int8)
    _run_and_compare(tmp_path / "out", {"x": frames}, frames=4)
