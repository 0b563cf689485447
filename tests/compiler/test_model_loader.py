"""Model loading: naming, old-style inputs, symbolic dims, folding, and refusal of bad files."""

from __future__ import annotations

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


def test_old_opset_is_refused():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", [1])], [_vi("y", None)], opset=7)
    with pytest.raises(ModelError, match="opset 7"):
        edgec.load_model(model)


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
