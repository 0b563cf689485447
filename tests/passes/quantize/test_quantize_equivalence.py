"""Quantized plans against onnxruntime: split plans equal the unsplit quantized model, the wire
formats cut the bytes on the links, and edgec's QDQ model agrees with onnxruntime's own
`quantize_static` (per channel, QDQ, MinMax) on the same calibration data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import edgec
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import run_stages
from graphs import Net
from qhelpers import calibration, ops, quantized, run

X = np.random.default_rng(11).standard_normal((1, 3, 8, 8)).astype(np.float32)


def _model() -> onnx.ModelProto:
    net = Net({"x": [1, 3, 8, 8]})
    net.conv("c1", "x", 3, 8)
    net.op("Relu", "r1", ["c1"])
    net.conv("c2", "r1", 8, 8)
    net.op("Relu", "r2", ["c2"])
    net.op("Add", "add", ["r2", "r1"])
    net.op("GlobalAveragePool", "gap", ["add"])
    net.op("Flatten", "flat", ["gap"])
    net.op("Gemm", "fc", ["flat", net.weight("fc.w", 10, 8), net.const("fc.b", np.zeros(10))], transB=1)
    return net.model(["fc"])


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    return calibration(tmp_path_factory.mktemp("cal"), {"x": [1, 3, 8, 8]}, count=32)


def _plan(cal, places: str, quantize: str = "quantize [a, b] int8") -> str:
    statements = "\n".join(f'quantize {d} int8 calibrate "{cal}"' for d in ("a", "b")) if quantize == "quantize [a, b] int8" \
        else quantize.format(cal=cal)
    return f"device a {{}}\ndevice b {{}}\n{places}\n{statements}\n"


def _step(program) -> float:
    """The tolerance of a comparison between quantized programs: the last quantized activation's step
    times the largest row sum of |fc.w| (what one rounding step of the Gemm's input moves a logit by)."""
    scale = float(program.node("flat/QuantizeLinear").inputs[1].const_value.numpy())
    fc = next(t for t in _model().graph.initializer if t.name == "fc.w")
    return scale * float(np.abs(onnx.numpy_helper.to_array(fc)).sum(axis=1).max())


def test_pipeline_split_equals_unsplit(cal, tmp_path):
    unsplit = quantized(_model(), _plan(cal, "place * on a"))
    result = edgec.compile(_model(), _plan(cal, "place c1 .. r2 on a\nplace * on b"), tmp_path / "out")
    assert len(result.program.stages) == 2
    crossing = {t.dtype for t in result.program.transfers}
    assert crossing == {"uint8"}  # the quantized tensor itself travels
    got = run_stages(CompiledOutput.open(tmp_path / "out"), {"x": X})["fc"]
    want = run(unsplit, {"x": X})[0]
    assert np.abs(got - want).max() <= 1.01 * _step(unsplit)


def test_intra_layer_split_parts_get_their_own_parameters(cal):
    unsplit = quantized(_model(), _plan(cal, "place * on a"))
    split = quantized(_model(), _plan(cal, "split c2 by filter into 2 on a, b merge on a\nplace * on a"))
    parts = [n for n in split.nodes() if n.op_type == "Conv" and n.name.startswith("c2")]
    assert len(parts) == 2 and all(n.inputs[1].producer().op_type == "DequantizeLinear" for n in parts)
    assert {r.stage for r in split.quantization} == {s.index for s in split.stages}
    got, want, fl = run(split, {"x": X})[0], run(unsplit, {"x": X})[0], run(_model(), {"x": X})[0]
    assert np.abs(got - want).max() <= 4 * _step(unsplit)
    assert np.abs(got - fl).max() < 0.05 * np.abs(fl).max()


@pytest.mark.parametrize("wire, dtype, ratio", [("int8", "int8", 4), ("uint8", "uint8", 4), ("fp16", "float16", 2)])
def test_wire_formats_cut_bytes_and_round_trip(cal, tmp_path, wire, dtype, ratio):
    places = "place c1 .. r2 on a\nplace * on b"
    float_bytes = sum(t.nbytes for t in edgec.compile(_model(), _plan(cal, places, ""), None).program.transfers)
    clause = "" if wire == "fp16" else ' calibrate "{cal}"'
    result = edgec.compile(_model(), _plan(cal, places, f"quantize wire {wire}{clause}"), tmp_path / "out")
    program = result.program
    assert {t.dtype for t in program.transfers} == {dtype}
    assert float_bytes == ratio * sum(t.nbytes for t in program.transfers)
    assert sorted((w.tensor, w.wire) for w in program.wire_quantization) == [("r1", wire), ("r2", wire)]
    assert all((w.scale is None) == (wire == "fp16") for w in program.wire_quantization)
    assert program.node("c2").inputs[1].producer() is None  # only the wire is quantized, the layers stay float
    assert ops(program).count("Send") == 2
    got = run_stages(CompiledOutput.open(tmp_path / "out"), {"x": X})["fc"]
    want = run(_model(), {"x": X})[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_agrees_with_onnxruntime_quantize_static(cal, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = _model()
    ours = quantized(model, _plan(cal, "place * on a"))
    samples = np.load(cal / "x.npy")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"x": x}

    onnx.save(model, tmp_path / "float.onnx")
    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "ort.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    theirs = onnx.load(tmp_path / "ort.onnx")
    got, want = run(ours, {"x": X})[0], run(theirs, {"x": X})[0]
    assert np.abs(got - want).max() <= 3 * _step(ours)


def test_selector_request_follows_the_parts_of_a_split_layer(cal):
    plan = f'device a {{}}\ndevice b {{}}\nsplit c2 by filter into 2 on a, b merge on a\nplace * on a\nquantize c2 int8 calibrate "{cal}"\n'
    program = quantized(_model(), plan)
    parts = [n for n in program.nodes() if n.op_type == "Conv" and n.name.startswith("c2")]
    assert len(parts) == 2 and all(n.inputs[1].producer().op_type == "DequantizeLinear" for n in parts)
    assert program.node("c1").inputs[1].producer() is None  # not selected: float
    quantized_nodes = sorted(n for r in program.quantization for n in r.nodes)
    assert quantized_nodes == sorted([p.name for p in parts] + ["c2/merge"])  # the merge Concat is c2's too
