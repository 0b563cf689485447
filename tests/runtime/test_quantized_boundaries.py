"""Boundary tensors that are not float32 (int8, uint8, float16; int64 and bool) through every engine.

The plans cut right on the narrow tensor (a QuantizeLinear or Cast output), so it is what
crosses: the manifest records its dtype and bytes (int8 = a quarter of float), and the Python
ranks (double-buffered, raw bytes), the TVM stage modules and the in-process verify all hand
it on unchanged. The C++ program's side is tests/backends/test_cpp_dtypes.py.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import edgec
from edgec.runtime.launcher import run
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import run_reference, verify
from graphs import Net
from quantized_graphs import FLOAT_PLAN, compile_quantized, float_twin

WIRES = ("int8", "uint8", "float16")
FLOAT_BYTES = 4 * 8 * 8 * 4


@pytest.fixture(scope="module")
def narrow_out(tmp_path_factory):
    made = {}

    def make(wire: str, backends=("onnx",)) -> object:
        key = (wire, tuple(backends))
        if key not in made:
            made[key] = compile_quantized(tmp_path_factory.mktemp(f"{wire}-{'-'.join(backends)}"), wire,
                                          backends=backends, quantized=False)
        return made[key]

    return make


@pytest.mark.parametrize("wire", WIRES)
def test_the_narrow_tensor_crosses_with_its_dtype_and_bytes(narrow_out, wire):
    out = narrow_out(wire)
    manifest = json.loads((out / "manifest.json").read_text())
    (transfer,) = manifest["transfers"]
    assert (transfer["tensor"], transfer["dtype"], transfer["wire"]) == ("q", wire, wire)
    assert transfer["bytes"] == FLOAT_BYTES // (4 if wire != "float16" else 2)
    (sent,) = json.loads((out / "comm.json").read_text())["ranks"][0]["sends"]
    assert sent["dtype"] == wire
    assert verify(out).ok


def test_float_plan_sends_four_times_the_bytes(tmp_path):
    onnx.save(float_twin(), tmp_path / "m.onnx")
    result = edgec.compile(tmp_path / "m.onnx", FLOAT_PLAN, tmp_path / "out")
    (transfer,) = result.manifest.transfers
    assert (transfer.dtype, transfer.nbytes) == ("float32", FLOAT_BYTES)


def mixed_model() -> onnx.ModelProto:
    """r (float32), g = r > 0.5 (bool) and am = argmax(r) (int64) all cross from a to b."""
    net = Net({"x": [1, 4, 6]})
    net.op("Relu", "r", ["x"])
    net.op("Greater", "g", ["r", net.const("half", np.array(0.5, np.float32))])
    net.op("ArgMax", "am", ["r"], axis=2, keepdims=1)
    net.op("Cast", "gf", ["g"], to=TensorProto.FLOAT)
    net.op("Cast", "amf", ["am"], to=TensorProto.FLOAT)
    net.op("Mul", "m", ["gf", "r"])
    net.op("Add", "out", ["m", "amf"])
    return net.model(["out"])


MIXED_PLAN = """
device a { arch x86_64 cores 1 mem 1GiB }
device b { arch x86_64 cores 1 mem 1GiB }
link a <-> b { bandwidth 100Mbit latency 1ms }
place [r, g, am] on a.cpu
place * on b.cpu
"""


def test_bool_and_int64_boundaries(tmp_path):
    onnx.save(mixed_model(), tmp_path / "m.onnx")
    result = edgec.compile(tmp_path / "m.onnx", MIXED_PLAN, tmp_path / "out")
    assert {t.tensor: (t.dtype, t.nbytes) for t in result.manifest.transfers} == {
        "r": ("float32", 96), "g": ("bool", 24), "am": ("int64", 32)}
    assert verify(tmp_path / "out").ok


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_python_ranks_double_buffer_narrow_tensors(narrow_out, wire, leftover_ranks):
    """Four different frames cycled over 7 measured frames: each output belongs to its own frame."""
    out = narrow_out(wire)
    frames = np.random.default_rng(5).standard_normal((4, 1, 3, 8, 8)).astype(np.float32)
    result = run(out, {"x": frames}, frames=7, warmup=1, keep_outputs=True)
    model = CompiledOutput.open(out).reference_model()
    for j in range(7):
        expected = run_reference(model, {"x": frames[j % 4]}, ["out"])["out"]
        np.testing.assert_allclose(result.outputs["out"][j], expected, rtol=1e-5, atol=1e-6)
    assert result.report["ranks"] == 2 and not leftover_ranks(out)
    assert verify(out, mpi=True).ok


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_tvm_stages_take_narrow_tensors(narrow_out, wire):
    out = narrow_out(wire, backends=("onnx", "tvm"))
    assert verify(out, engine="tvm").ok
    assert verify(out, engine="tvm", mpi=True).ok
    x = np.random.default_rng(4).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.savez(out.parent / "data.npz", x=x, labels=np.arange(6) % 4)
    report = verify(out, engine="tvm", dataset=out.parent / "data.npz")
    assert report.ok and report.dataset.samples == 6 and report.dataset.changed == 0


@pytest.mark.slow
def test_bool_and_int64_boundaries_through_mpi_and_tvm(tmp_path):
    onnx.save(mixed_model(), tmp_path / "m.onnx")
    edgec.compile(tmp_path / "m.onnx", MIXED_PLAN, tmp_path / "out", backends=("tvm",))
    for engine in ("onnxruntime", "tvm"):
        assert verify(tmp_path / "out", engine=engine, mpi=True).ok
    assert verify(tmp_path / "out", engine="tvm").ok
