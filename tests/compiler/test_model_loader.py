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
             helper.make_node("ReduceProd", ["s"], ["n"], name="count", keepdims=1),
             helper.make_node("Reshape", ["x", "n"], ["y"], name="reshape")]
    model = _model(nodes, [_vi("x", ["N", 4])], [_vi("y", None)])
    loaded = edgec.load_model(model, input_shapes={"x": [3, 4]})
    assert [n.op_type for n in loaded.graph] == ["Reshape"]
    assert list(loaded.graph.node(0).outputs[0].shape) == [12]


def test_a_no_op_graph_output_keeps_its_node_name():
    """onnxscript's folder turns a Reshape to the same shape into an Identity; the node keeps the plan's name."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")]
    loaded = edgec.load_model(_model(nodes, [_vi("x", ["N", 4])], [_vi("y", None)]), input_shapes={"x": [3, 4]})
    assert [(n.name, [v.name for v in n.outputs]) for n in loaded.graph] == [("reshape", ["y"])]
    assert list(loaded.graph.outputs[0].shape) == [3, 4]


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


# ---------------------------------------------------------------------------------------------
# exporters' dims and declared shapes, shapes only onnxruntime knows, non-tensor types
# ---------------------------------------------------------------------------------------------

def _relu_model(dims) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", dims)], [_vi("y", None)])


@pytest.mark.parametrize("dynamic", [-1, 0])
def test_minus_one_and_zero_dims_are_unknown_and_overridable(dynamic, tmp_path):
    """Exporters write -1 (or 0) for a dynamic dim: like a symbol, it needs a shape and takes any."""
    model = _relu_model([dynamic, 3])
    with pytest.raises(ModelError, match=rf"input 'x' has unknown dimensions \[{dynamic}, 3\]"):
        edgec.load_model(model)
    assert list(edgec.load_model(model, input_shapes={"x": [5, 3]}).graph.outputs[0].shape) == [5, 3]
    with pytest.raises(ModelError, match="dim 1 is fixed to 3 in the model, got 4"):
        edgec.load_model(model, input_shapes={"x": [5, 4]})
    plan = 'input "x" [2, 3]\ndevice a { cores 1 }\nplace * on a\n'
    assert list(edgec.load_program(model, plan).graph.outputs[0].shape) == [2, 3]


def test_stale_value_info_and_declared_output_shapes_are_dropped():
    """value_info of the wrong rank and a graph output declared [1, 7] (what old exporters leave) do not
    stop loading: shapes are inferred again, and the model's outputs are what onnxruntime computes."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Transpose", ["a"], ["y"], name="t", perm=[1, 0])]
    model = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [1, 7])])
    model.graph.value_info.extend([_vi("a", [6]), helper.make_tensor_value_info("y", TensorProto.INT64, [9, 9, 9])])
    with pytest.raises(onnx.shape_inference.InferenceError, match="differ in rank"):
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    loaded = edgec.load_model(model)
    assert [list(n.outputs[0].shape) for n in loaded.graph] == [[2, 3], [3, 2]]
    assert loaded.graph.outputs[0].dtype == edgec.compiler.model_loader.ir.DataType.FLOAT


def _scaler_model(opsets) -> onnx.ModelProto:
    nodes = [helper.make_node("Scaler", ["x"], ["s"], name="scale", domain="ai.onnx.ml", offset=[1.0, 2.0],
                              scale=[2.0, 3.0])]
    if "" in opsets:
        nodes.append(helper.make_node("Relu", ["s"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "g", [_vi("x", ["N", 2])], [_vi(nodes[-1].output[0], None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = 8
    return model


def test_a_shape_only_onnxruntime_knows_is_measured_and_said():
    """ONNX has no shape inference for ai.onnx.ml's Scaler; onnxruntime runs it, so its shapes are measured."""
    model = _scaler_model({"": 17, "ai.onnx.ml": 3})
    assert not any(vi.name == "s" and vi.type.tensor_type.HasField("shape")
                   for vi in onnx.shape_inference.infer_shapes(model).graph.value_info)
    notes: list[str] = []
    loaded = edgec.load_model(model, input_shapes={"x": [4, 2]}, progress=notes.append)
    assert [(n.name, list(n.outputs[0].shape), n.outputs[0].dtype.name) for n in loaded.graph] == [
        ("scale", [4, 2], "FLOAT"), ("relu", [4, 2], "FLOAT")]
    assert notes == ["onnxruntime measured the shapes of 2 value(s) that ONNX shape inference leaves unknown "
                     "(it stops at ai.onnx.ml.Scaler)"]


def test_a_model_of_ml_ops_only_needs_no_default_opset():
    loaded = edgec.load_model(_scaler_model({"ai.onnx.ml": 3}), input_shapes={"x": [1, 2]})
    assert [list(v.shape) for v in loaded.graph.outputs] == [[1, 2]]


def test_an_op_used_beyond_its_opset_that_onnxruntime_runs_is_not_refused():
    """Concat with axis=-1 at opset 9 (negative axes came in opset 11): ONNX inference gives up, onnxruntime runs it."""
    nodes = [helper.make_node("Concat", ["x", "x"], ["c"], name="cat", axis=-1),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    loaded = edgec.load_model(_model(nodes, [_vi("x", [1, 2])], [_vi("y", None)], opset=9))
    assert [list(n.outputs[0].shape) for n in loaded.graph] == [[1, 4], [1, 4]]


def test_a_shape_that_depends_on_the_data_is_refused_naming_the_node():
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
             helper.make_node("Transpose", ["nz"], ["y"], name="t")]
    model = _model(nodes, [_vi("x", [4])], [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    with pytest.raises(ModelError) as info:
        edgec.load_model(model)
    assert info.value.message == ("node 'nonzero': output 'nz' has a shape that depends on the input data ([1, 0] for "
                                  "inputs of zeros, [1, 4] for ones); edgec needs static shapes")


def _zipmap_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Softmax", ["x"], ["p"], name="softmax"),
             helper.make_node("ZipMap", ["p"], ["probabilities"], name="zipmap", domain="ai.onnx.ml",
                              classlabels_int64s=[0, 1, 2])]
    probabilities = helper.make_tensor_sequence_value_info("probabilities", TensorProto.FLOAT, None)
    probabilities.type.sequence_type.elem_type.CopyFrom(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    graph = helper.make_graph(nodes, "g", [_vi("x", [1, 3])], [probabilities])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    return model


def test_a_map_typed_output_is_refused_saying_so_and_not_that_the_file_is_truncated(tmp_path):
    path = tmp_path / "zipmap.onnx"
    onnx.save(_zipmap_model(), path)
    for source in (path, _zipmap_model()):
        with pytest.raises(ModelError) as info:
            edgec.load_model(source)
        assert info.value.message == ("graph output 'probabilities' has type seq(map(int64, tensor(float))), which "
                                      "edgec cannot split: stages exchange and return tensors only")
        assert "ZipMap" in info.value.hint and "zipmap" in info.value.hint
    assert "truncated" not in info.value.format()


def test_a_map_typed_value_info_hint_is_dropped_not_refused():
    model = _zipmap_model()
    model.graph.value_info.append(model.graph.output[0])
    model.graph.output[0].CopyFrom(_vi("p", None))
    before = model.SerializeToString()
    loaded = edgec.load_model(model)
    assert [n.name for n in loaded.graph] == ["softmax"] and model.SerializeToString() == before


# ---------------------------------------------------------------------------------------------
# what the loader records for plans: the file's node order, what was folded or removed
# ---------------------------------------------------------------------------------------------

def _shape_chain_model() -> onnx.ModelProto:
    """relu, then a Shape→Gather→Unsqueeze→Concat chain (it folds) feeding a Reshape, then a no-op Identity."""
    index = numpy_helper.from_array(np.array(0, np.int64), "zero")
    minus_one = numpy_helper.from_array(np.array([-1], np.int64), "minus_one")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Shape", ["r"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["batch"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["b1"], name="unsqueeze"),
             helper.make_node("Concat", ["b1", "minus_one"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["r", "target"], ["flat"], name="reshape"),
             helper.make_node("Sigmoid", ["flat"], ["g"], name="sigmoid"),
             helper.make_node("Identity", ["g"], ["y"], name="copy")]
    return _model(nodes, [_vi("x", ["N", 3, 4])], [_vi("y", None)], [index, minus_one, axes])


def test_the_loader_records_the_file_order_and_what_it_folded():
    from edgec.compiler.model_loader import FILE_NODES, FOLDED, REMOVED_NODES

    loaded = edgec.load_model(_shape_chain_model(), input_shapes={"x": [2, 3, 4]})
    assert [n.name for n in loaded.graph] == ["relu", "reshape", "sigmoid", "copy"]
    assert loaded.meta[FILE_NODES] == ["relu", "shape", "gather", "unsqueeze", "concat", "reshape", "sigmoid", "copy"]
    assert loaded.meta[REMOVED_NODES] == {name: FOLDED for name in ("shape", "gather", "unsqueeze", "concat")}
    assert list(loaded.graph.outputs[0].shape) == [2, 12]


def test_a_range_ending_on_a_folded_node_means_the_same_slice(tmp_path):
    plan = ("device a { cores 1 }\ndevice b { cores 1 }\n"
            "place relu .. gather on a\nplace unsqueeze .. copy on b\n")
    program = edgec.load_program(_shape_chain_model(), plan, input_shapes={"x": [2, 3, 4]})
    assert {n.name: n.meta["edgec.placement"].device for n in program.nodes()} == {
        "relu": "a", "reshape": "b", "sigmoid": "b", "copy": "b"}
    assert program.warnings == []
    result = edgec.compile(_shape_chain_model(), plan, tmp_path / "out", input_shapes={"x": [2, 3, 4]})
    from edgec.runtime.outputs import random_inputs
    from edgec.runtime.verify import verify

    assert verify(tmp_path / "out", random_inputs(result.manifest, 0), tolerance=1e-6).ok


def test_a_folded_node_placed_alone_is_a_warning_at_the_selector():
    plan = ("device a { cores 1 }\ndevice b { cores 1 }\n"
            "place [concat, relu] on a\nplace \"gath*\" on b\nplace shape .. unsqueeze on b\nplace * on b\n")
    program = edgec.load_program(_shape_chain_model(), plan, input_shapes={"x": [2, 3, 4]})
    assert [w.format().splitlines()[0] for w in program.warnings] == [
        "warning: <plan>:3:8: node 'concat' was folded into a constant at load time; it needs no placement",
        "warning: <plan>:4:7: pattern 'gath*' matches only node(s) removed at load time (1: 'gather'); they need no "
        "placement",
        "warning: <plan>:5:7: range 'shape .. unsqueeze' holds only nodes removed at load time; they need no placement",
    ]
    assert program.node("relu").meta["edgec.placement"].device == "a"
    with pytest.raises(edgec.PlanError, match="unknown node 'concatt'; did you mean 'concat'"):
        edgec.load_program(_shape_chain_model(), plan.replace("[concat,", "[concatt,"), input_shapes={"x": [2, 3, 4]})


# ---------------------------------------------------------------------------------------------
# control flow: placed whole
# ---------------------------------------------------------------------------------------------

def _loop_model() -> onnx.ModelProto:
    """relu → Loop (3 trips) whose body reads `r` from the outer graph; a carried sum and a scan output."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         helper.make_node("Add", ["acc_in", "r"], ["acc_out"], name="add"),
         helper.make_node("Mul", ["acc_in", "r"], ["step"], name="mul")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         _vi("acc_in", [2, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _vi("acc_out", [2, 3]), _vi("step", [2, 3])])
    trips = numpy_helper.from_array(np.array(3, np.int64), "trips")
    keep_going = numpy_helper.from_array(np.array(True), "keep_going")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Neg", ["x"], ["start"], name="neg"),
             helper.make_node("Loop", ["trips", "keep_going", "start"], ["acc", "steps"], name="loop", body=body),
             helper.make_node("Sigmoid", ["acc"], ["y"], name="out")]
    return _model(nodes, [_vi("x", [2, 3])], [_vi("y", None), _vi("steps", None)], [trips, keep_going])


def test_a_loop_reading_the_outer_graph_is_placed_whole_and_verifies(tmp_path):
    model = _loop_model()
    loaded = edgec.load_model(model)
    loop = loaded.graph.node("loop")
    assert [v.name for v in loop.inputs] == ["trips", "keep_going", "start", "r"]
    assert [v.name for v in loop.outputs] == ["acc", "r.after_loop", "steps"]
    assert [list(v.shape) for v in loop.outputs] == [[2, 3], [2, 3], [3, 2, 3]]
    from edgec.compiler.model_loader import captured_values

    assert captured_values(loop) == []
    plan = "device a { cores 1 }\ndevice b { cores 1 }\nplace relu .. neg on a\nplace loop .. out on b\n"
    onnx.save(model, tmp_path / "m.onnx")  # verify then compares with the file as written, in onnxruntime
    result = edgec.compile(tmp_path / "m.onnx", plan, tmp_path / "out")
    assert len(result.program.stages) == 2
    from edgec.runtime.outputs import random_inputs
    from edgec.runtime.verify import verify

    assert verify(tmp_path / "out", random_inputs(result.manifest, 0), tolerance=1e-6).ok


def test_a_scan_reading_the_outer_graph_is_placed_whole_and_verifies(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"], name="add"),
         helper.make_node("Mul", ["row", "w"], ["scaled"], name="mul")],
        "body", [_vi("sum_in", [3]), _vi("row", [3])], [_vi("sum_out", [3]), _vi("scaled", [3])])
    nodes = [helper.make_node("ReduceMean", ["x"], ["init"], name="mean", axes=[0], keepdims=0),
             helper.make_node("Sigmoid", ["init"], ["w"], name="weights"),
             helper.make_node("Scan", ["init", "x"], ["total", "rows"], name="scan", body=body, num_scan_inputs=1),
             helper.make_node("Relu", ["rows"], ["y"], name="out")]
    model = _model(nodes, [_vi("x", [4, 3])], [_vi("total", None), _vi("y", None)])
    loaded = edgec.load_model(model)
    scan = loaded.graph.node("scan")
    assert [v.name for v in scan.inputs] == ["init", "w", "x"]
    assert [v.name for v in scan.outputs] == ["total", "w.after_scan", "rows"]
    assert [list(v.shape) for v in scan.outputs] == [[3], [3], [4, 3]]
    plan = "device a { cores 1 }\ndevice b { cores 1 }\nplace mean .. weights on a\nplace scan .. out on b\n"
    onnx.save(model, tmp_path / "m.onnx")  # verify then compares with the file as written, in onnxruntime
    result = edgec.compile(tmp_path / "m.onnx", plan, tmp_path / "out")
    from edgec.runtime.outputs import random_inputs
    from edgec.runtime.verify import verify

    assert verify(tmp_path / "out", random_inputs(result.manifest, 0), tolerance=1e-6).ok


def _if_model(branches_read: str) -> onnx.ModelProto:
    """`branch` picks by the sign of sum(x); both branches read `branches_read` from the enclosing graph."""
    then = helper.make_graph([helper.make_node("Neg", [branches_read], ["t"], name="then_neg")], "then", [],
                             [_vi("t", [2, 3])])
    other = helper.make_graph([helper.make_node("Abs", [branches_read], ["e"], name="else_abs")], "else", [],
                              [_vi("e", [2, 3])])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("ReduceSum", ["x"], ["total"], name="sum", keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"], name="greater"),
             helper.make_node("If", ["positive"], ["picked"], name="branch", then_branch=then, else_branch=other),
             helper.make_node("Mul", ["picked", "r"], ["y"], name="out")]
    inits = [numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "bias"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    return _model(nodes, [_vi("x", [2, 3])], [_vi("y", None)], inits)


def test_an_if_whose_branches_read_only_weights_is_placed_whole_and_verifies(tmp_path):
    loaded = edgec.load_model(_if_model("bias"))
    from edgec.compiler.model_loader import captured_values

    assert captured_values(loaded.graph.node("branch")) == []
    plan = "device a { cores 1 }\ndevice b { cores 1 }\nplace relu .. greater on a\nplace branch .. out on b\n"
    onnx.save(_if_model("bias"), tmp_path / "m.onnx")  # verify then compares with the file as written
    result = edgec.compile(tmp_path / "m.onnx", plan, tmp_path / "out")
    assert len(result.program.stages) == 2
    from edgec.runtime.verify import verify

    for sign in (1.0, -1.0):  # both branches
        report = verify(tmp_path / "out", {"x": np.full((2, 3), sign, np.float32)}, tolerance=1e-6)
        assert report.ok and report.outputs[0].max_abs == 0


def test_an_if_whose_branches_read_a_computed_value_is_refused_naming_both():
    with pytest.raises(ModelError) as info:
        edgec.load_model(_if_model("r"))
    assert info.value.message == ("node 'branch': its branches read 'r' from outside the If, and it is not a "
                                  "constant; an If takes no inputs, so edgec cannot place it on its own")
