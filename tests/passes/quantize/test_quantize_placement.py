"""Where the pass puts QuantizeLinear/DequantizeLinear on tiny graphs: around Conv, Gemm, MatMul,
Add, Concat and pooling, per-channel weight axes, nothing on unselected nodes, `modified` honest,
an old opset upgraded, and the placement contract (Q in the producer's stage, DQ in the reader's)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import edgec
from edgec.compiler.annotations import stage_of
from edgec.passes import Quantize, SplitVertical
from graphs import Net
from qhelpers import calibration, node_inputs, ops, quantized, run, staged


def _cnn() -> onnx.ModelProto:
    net = Net({"x": [1, 3, 8, 8]})
    net.conv("c1", "x", 3, 4)
    net.op("Relu", "r1", ["c1"])
    net.conv("c2", "r1", 4, 4)
    net.op("Add", "add", ["c2", "r1"])
    net.op("Concat", "cat", ["add", "r1"], axis=1)
    net.op("MaxPool", "pool", ["cat"], kernel_shape=[2, 2], strides=[2, 2])
    net.op("Flatten", "flat", ["pool"])
    net.op("Gemm", "fc", ["flat", net.weight("fc.w", 128, 5), net.const("fc.b", np.ones(5))])
    return net.model(["fc"])


def _plan(cal, extra: str = "", subject: str = "a") -> str:
    return f'device a {{}}\ndevice b {{}}\n{extra}place * on a\nquantize {subject} int8 calibrate "{cal}"\n'


@pytest.fixture
def cal(tmp_path):
    return calibration(tmp_path / "cal", {"x": [1, 3, 8, 8]})


def _dq_axis(program, node: str, index: int) -> int | None:
    dq = node_inputs(program, node)[index]
    assert dq.op_type == "DequantizeLinear"
    return dq.attributes.get_int("axis", None) if "axis" in dq.attributes else None


def test_qdq_around_conv_add_concat_pool_gemm(cal):
    prog = quantized(_cnn(), _plan(cal))
    producers = {name: [p.op_type if p else None for p in node_inputs(prog, name)] for name in
                 ("c1", "c2", "add", "cat", "pool", "flat", "fc")}
    assert producers["c1"] == ["DequantizeLinear", "DequantizeLinear"]
    assert producers["c2"] == ["DequantizeLinear", "DequantizeLinear"]
    assert producers["add"] == ["DequantizeLinear", "DequantizeLinear"]
    assert producers["cat"] == ["DequantizeLinear", "DequantizeLinear"]
    assert producers["pool"] == producers["flat"] == ["DequantizeLinear"]
    assert producers["fc"] == ["DequantizeLinear"] * 3
    assert _dq_axis(prog, "c1", 1) == 0 and _dq_axis(prog, "fc", 1) == 1  # Gemm transB=0: B is [K, N]
    bias = node_inputs(prog, "fc")[2]
    assert bias.inputs[0].const_value.numpy().dtype == np.int32
    relu_reader = prog.node("r1").outputs[0].uses()
    assert {u.node.op_type for u in relu_reader} == {"QuantizeLinear"}  # the Relu is absorbed: Q after it, not the Conv
    record, = prog.quantization
    assert record.activation_dtype == "uint8" and record.engine == "onnxruntime" and "uint8" in record.reason
    assert set(record.nodes) == {"c1", "c2", "add", "cat", "pool", "flat", "fc"}


def test_shared_scale_through_maxpool_and_flatten(cal):
    prog = quantized(_cnn(), _plan(cal))
    q_in = prog.node("cat/QuantizeLinear")
    q_pool = prog.node("pool/QuantizeLinear")
    for a, b in zip(q_in.inputs[1:], q_pool.inputs[1:]):
        assert a.const_value.numpy() == b.const_value.numpy()


def test_weights_stored_as_int8_and_float_weights_dropped(cal):
    prog = quantized(_cnn(), _plan(cal))
    assert "c1.w" not in prog.graph.initializers and "fc.w" not in prog.graph.initializers
    assert prog.graph.initializers["c1/weight/quantized"].const_value.numpy().dtype == np.int8


def test_gemm_transposed_and_matmul_weight_axes(tmp_path):
    net = Net({"x": [2, 6]})
    net.op("Gemm", "g", ["x", net.weight("g.w", 5, 6)], transB=1)
    net.op("MatMul", "m", ["g", net.weight("m.w", 5, 3)])
    cal = calibration(tmp_path / "c", {"x": [2, 6]})
    prog = quantized(net.model(["m"]), _plan(cal))
    assert _dq_axis(prog, "g", 1) == 0 and _dq_axis(prog, "m", 1) == 1
    per_tensor = quantized(net.model(["m"]), _plan(cal).replace("int8 calibrate", "int8 per_tensor calibrate"))
    assert _dq_axis(per_tensor, "g", 1) is None


def test_matmul_of_two_activations_quantizes_both(tmp_path):
    net = Net({"x": [4, 4]})
    net.op("Relu", "r", ["x"])
    net.op("MatMul", "m", ["x", "r"])
    cal = calibration(tmp_path / "c", {"x": [4, 4]})
    prog = quantized(net.model(["m"]), _plan(cal, subject="m"))
    assert [p.op_type for p in node_inputs(prog, "m")] == ["DequantizeLinear", "DequantizeLinear"]
    assert node_inputs(prog, "r")[0] is None  # the unselected Relu reads the float input


def test_no_qdq_on_unselected_nodes(cal):
    prog = quantized(_cnn(), _plan(cal, subject="c1"))
    assert [p.op_type if p else None for p in node_inputs(prog, "c2")] == ["Relu", None]
    assert node_inputs(prog, "c1")[0].op_type == "DequantizeLinear"
    assert ops(prog).count("QuantizeLinear") == 2  # c1's input and its (Relu-absorbed) output
    assert prog.quantization[0].nodes == ("c1",)


def test_no_statement_is_an_exact_no_op():
    model = _cnn()
    prog = edgec.compile(model, "device a {}\nplace * on a\n", None, passes=[SplitVertical()]).program
    before = ops(prog)
    result = Quantize()(prog)
    assert result.modified is False and ops(prog) == before and prog.quantization == []


def test_quantized_output_is_close_to_float(cal):
    model = _cnn()
    prog = quantized(model, _plan(cal))
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (want,), (got,) = run(model, {"x": x}), run(prog, {"x": x})
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert prog.graph.outputs[0].name == "fc"


def test_pipeline_places_q_with_producer_and_dq_with_reader(cal):
    prog = quantized(_cnn(), _plan(cal, extra="place c1 .. add on b\n", subject="[c1, r1, c2, add, cat, pool, flat, fc]"))
    q, dq = prog.node("add/QuantizeLinear"), prog.node("add/DequantizeLinear")
    assert (stage_of(q), stage_of(dq)) == (0, 1)  # the uint8 tensor itself crosses, no DQ/Q pair around the link
    assert [r.stage for r in prog.quantization] == [0, 1]


def test_old_opset_upgraded_with_annotations_kept(cal):
    model = _cnn()
    model.opset_import[0].version = 11
    model = onnx.shape_inference.infer_shapes(model)
    prog = quantized(model, _plan(cal))
    assert prog.model.opset_imports[""] == 13
    assert "QuantizeLinear" in ops(prog)
    prog.verify()
    assert "opset 11 upgraded to 13" in prog.pass_log[-1]["summary"]


def test_batchnorm_folded_before_weights_are_quantized(tmp_path):
    net = Net({"x": [1, 2, 4, 4]})
    net.conv("c", "x", 2, 3)
    params = [net.const(f"bn.{k}", v) for k, v in
              (("s", [1.0, 2.0, 0.5]), ("b", [0.1, 0.2, 0.3]), ("m", [0.0, 0.5, -0.5]), ("v", [1.0, 2.0, 0.25]))]
    net.op("BatchNormalization", "bn", ["c", *params])
    model = net.model(["bn"])
    cal = calibration(tmp_path / "c", {"x": [1, 2, 4, 4]})
    prog = quantized(model, _plan(cal))
    assert "BatchNormalization" not in ops(prog) and node_inputs(prog, "c")[1].op_type == "DequantizeLinear"
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    assert np.abs(run(prog, {"x": x})[0] - run(model, {"x": x})[0]).max() < 0.1


def test_statement_selecting_nothing_quantizable_changes_nothing(tmp_path):
    net = Net({"x": [1, 4]})
    net.op("Sigmoid", "s", [net.op("Relu", "r", ["x"])])
    cal = calibration(tmp_path / "c", {"x": [1, 4]})
    prog = staged(net.model(["s"]), _plan(cal))
    result = Quantize()(prog)
    assert result.modified is False and ops(prog) == ["Relu", "Sigmoid"] and prog.quantization == []


def test_quantize_statement_without_the_pass_is_refused(cal):
    from edgec.compiler.diagnostics import PlanError

    with pytest.raises(PlanError, match="no 'quantize' pass") as info:
        edgec.compile(_cnn(), _plan(cal), None, passes=[SplitVertical()])
    assert info.value.span.line == 4
