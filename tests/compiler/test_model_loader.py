"""Model loading: naming, old-style inputs, symbolic dims, folding, and refusal of bad files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.compiler.diagnostics import ModelError, UsageError
from zoo import zoo_path


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_unnamed_nodes_get_stable_names():
    model = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["y"], ["z"], name="s"),
                    helper.make_node("Relu", ["z"], ["w"])], [_vi("x", [1, 2])], [_vi("w", None)])
    loaded = edgec.load_model(model)
    assert [n.name for n in loaded.graph] == ["Relu_0", "s", "Relu_2"]


def test_duplicate_names_are_made_unique():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="n"), helper.make_node("Relu", ["y"], ["z"], name="n")],
                   [_vi("x", [1])], [_vi("z", None)])
    assert [n.name for n in edgec.load_model(model).graph] == ["n", "n_1"]


def test_initializers_listed_as_inputs_are_weights():
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                   [_vi("x", [1, 2]), _vi("w", [2, 2])], [_vi("y", None)], [w])
    loaded = edgec.load_model(model)
    assert [v.name for v in loaded.graph.inputs] == ["x"]
    assert "w" in loaded.graph.initializers


def test_symbolic_dims_need_a_shape():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", ["N", 3])], [_vi("y", None)])
    with pytest.raises(ModelError, match="input 'x' has unknown dimensions") as info:
        edgec.load_model(model)
    assert "--input-shape" in info.value.format()
    fixed = edgec.load_model(model, input_shapes={"x": [2, 3]})
    assert list(fixed.graph.node(0).outputs[0].shape) == [2, 3]


def test_input_shape_must_match_fixed_dims():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", ["N", 3])], [_vi("y", None)])
    with pytest.raises(ModelError, match="dim 1 is fixed to 3"):
        edgec.load_model(model, input_shapes={"x": [2, 4]})
    with pytest.raises(ModelError, match="no input 'xx'"):
        edgec.load_model(model, input_shapes={"xx": [2, 3]})


def test_shape_chains_are_folded():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")]
    model = _model(nodes, [_vi("x", ["N", 4])], [_vi("y", None)])
    loaded = edgec.load_model(model, input_shapes={"x": [3, 4]})
    assert [n.op_type for n in loaded.graph] == ["Reshape"]
    assert list(loaded.graph.node(0).outputs[0].shape) == [3, 4]


def test_light_zoo_constant_of_shape_is_folded():
    loaded = edgec.load_model(zoo_path("squeezenet"))
    assert not any(n.op_type == "ConstantOfShape" for n in loaded.graph)
    assert all(isinstance(d, int) for n in loaded.graph for v in n.outputs for d in v.shape)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        edgec.load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff\xff")
    with pytest.raises(ModelError, match="cannot read"):
        edgec.load_model(bad)


def _old_model(opset: int) -> onnx.ModelProto:
    """Conv + BatchNorm + Relu + Flatten + Gemm at an old opset (IR 3: weights listed as inputs too)."""
    rng = np.random.default_rng(0)
    weights = {"cw": (4, 3, 3, 3), "cb": (4,), "s": (4,), "b": (4,), "m": (4,), "fw": (5, 4 * 6 * 6), "fb": (5,)}
    inits = [numpy_helper.from_array(rng.uniform(0.5, 1.0, shape).astype(np.float32), name) for name, shape in weights.items()]
    inits.append(numpy_helper.from_array(np.full(4, 0.9, np.float32), "v"))
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    model = _model(nodes, [_vi("x", [1, 3, 6, 6])] + [_vi(t.name, list(t.dims)) for t in inits], [_vi("y", [1, 5])],
                   inits, opset=opset)
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset", [7, 8])
def test_old_opsets_are_converted_and_say_so(opset, tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save(_old_model(opset), path)
    notes: list[str] = []
    loaded = edgec.load_model(path, progress=notes.append)
    assert loaded.opset_imports[""] == 9
    assert notes == [f"the model uses opset {opset}; converted it to opset 9 with onnx.version_converter"]
    assert [n.name for n in loaded.graph] == ["conv", "bn", "relu", "flat", "fc"]
    plan = "device a { cores 1 }\ndevice b { cores 1 }\nsplit fc by input into 2 on a, b\nplace conv .. bn on a\nplace * on b\n"
    messages: list[str] = []
    edgec.compile(path, plan, tmp_path / "out", progress=messages.append)
    assert any("converted it to opset 9" in m for m in messages)
    from edgec.runtime.outputs import random_inputs
    from edgec.runtime.verify import verify

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert verify(tmp_path / "out", random_inputs(manifest, 0), tolerance=1e-5).ok


def test_what_the_version_converter_cannot_convert_is_refused():
    model = _model([helper.make_node("Tile", ["x", "t", "a"], ["y"], name="tile")],
                   [_vi("x", [2, 3])], [_vi("y", None)],
                   [numpy_helper.from_array(np.array([2.0], np.float32), "t"), numpy_helper.from_array(np.array([0.0], np.float32), "a")],
                   opset=5)
    with pytest.raises(ModelError, match="uses opset 5 and the ONNX version converter cannot convert it to opset 9") as info:
        edgec.load_model(model)
    assert "Tile" in info.value.message


def _cycle_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="add"), helper.make_node("Relu", ["a"], ["b"], name="r1"),
             helper.make_node("Relu", ["b"], ["c"], name="r2"), helper.make_node("Relu", ["b"], ["y"], name="out")]
    return _model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])])


def test_a_cycle_is_a_model_error_naming_its_nodes():
    with pytest.raises(ModelError) as info:
        edgec.load_model(_cycle_model())
    assert info.value.message == "node 'r1': the graph has a cycle: r1 -> r2 -> add -> r1"


def test_a_cycle_is_reported_at_load_time_by_compile_too(tmp_path):
    with pytest.raises(ModelError, match="the graph has a cycle: r1 -> r2 -> add -> r1"):
        edgec.compile(_cycle_model(), "device a { cores 1 }\nplace * on a\n", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nodes_listed_out_of_order_are_sorted_not_refused():
    nodes = [helper.make_node("Sigmoid", ["a"], ["y"], name="second"), helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Relu", ["x"], ["z"], name="other")]
    loaded = edgec.load_model(_model(nodes, [_vi("x", [1, 4])], [_vi("y", None), _vi("z", None)]))
    assert [n.name for n in loaded.graph] == ["Relu_1", "second", "other"]
    assert list(loaded.graph.outputs[0].shape) == [1, 4]


def test_input_dims_are_bounded():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", ["n", 4])], [_vi("y", None)])
    with pytest.raises(ModelError, match="at most 2147483647"):
        edgec.load_model(model, input_shapes={"x": [2**31, 4]})


def test_a_folded_scalar_constant_keeps_its_rank():
    """Clip's min/max from a scalar `Constant` (what the version converter writes for Clip 6 -> 11)."""
    scalar = onnx.helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("Constant", [], ["lo"], value=scalar), helper.make_node("Clip", ["x", "lo"], ["y"], name="clip")]
    loaded = edgec.load_model(_model(nodes, [_vi("x", [1, 4])], [_vi("y", None)]))
    lo = loaded.graph.node(0).inputs[1]
    assert list(lo.shape) == [] and lo.const_value.numpy().shape == ()


def _external_model(tmp_path, location: str):
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_vi("x", [1, 2])], [_vi("y", None)], [w])
    onnx.external_data_helper.convert_model_to_external_data(model, location="w.bin", size_threshold=0)
    onnx.save(model, tmp_path / "m.onnx")
    if location != "w.bin":
        saved = onnx.load(tmp_path / "m.onnx", load_external_data=False)
        for entry in saved.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(saved, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_external_data_loads_lazily(tmp_path):
    loaded = edgec.load_model(_external_model(tmp_path, "w.bin"))
    tensor = loaded.graph.initializers["w"].const_value
    assert tensor.__class__.__name__ == "ExternalTensor"
    assert tensor.numpy().tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd"])
def test_external_data_outside_model_dir_is_refused(tmp_path, location):
    sub = tmp_path / "model"
    sub.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="outside the model's directory"):
        edgec.load_model(_external_model(sub, location))
