"""The canonicalize pass on tiny graphs: what it removes and rewrites, exact against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgec.compiler.annotations import placement_of, stage_of
from edgec.compiler.diagnostics import PassError
from edgec.compiler.facts import Fact
from edgec.passes import Canonicalize, CommInsert, SplitVertical, default_pipeline
from graphs import Net, chain, diamond, program
from split_helpers import run


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def canonical(model: onnx.ModelProto, placement: dict[str, str] | None = None):
    """Canonicalize, verify, and check every output (by name) against onnxruntime on the original model."""
    feeds = _feeds(model)
    expected = dict(zip([o.name for o in model.graph.output], run(model, feeds)))
    prog = program(model, placement or {"*": "a"})
    inputs = [v.name for v in prog.graph.inputs]
    result = Canonicalize()(prog)
    prog.verify()
    assert [v.name for v in prog.graph.inputs] == inputs
    assert [v.name for v in prog.graph.outputs] == list(expected)
    for name, got in zip(expected, run(prog.model, feeds)):
        np.testing.assert_array_equal(got, expected[name])
    return prog, result


def ops(prog) -> list[str]:
    return [n.op_type for n in prog.nodes()]


def test_dropout_and_identity_are_removed():
    net = Net({"x": [1, 4]})
    net.op("Dropout", "d", ["x"])
    net.op("Relu", "r", ["d"])
    net.op("Identity", "i", ["r"])
    net.op("Sigmoid", "y", ["i"])
    prog, result = canonical(net.model(["y"]))
    assert ops(prog) == ["Relu", "Sigmoid"] and prog.node("r").inputs[0] is prog.graph.inputs[0]
    assert result.modified and result.details == {"Dropout → Identity": 1, "Identity removed": 2}


@pytest.mark.parametrize("opset", [10, 13])
def test_inference_dropout_is_removed_at_every_opset(opset):
    net = Net({"x": [1, 4]})
    if opset < 12:
        net.op("Dropout", "d", ["x"], ratio=0.3)
    else:
        net.op("Dropout", "d", ["x", net.const("ratio", np.array(0.3)), net.tensor("train", np.array(False))])
    net.op("Relu", "y", ["d"])
    model = net.model(["y"])
    model.opset_import[0].version = opset
    prog, _ = canonical(model)
    assert ops(prog) == ["Relu"]


def test_training_dropout_stays():
    net = Net({"x": [1, 4]})
    net.op("Dropout", "d", ["x", net.const("ratio", np.array(0.3)), net.tensor("train", np.array(True))])
    net.op("Relu", "y", ["d"])
    prog = program(net.model(["y"]), {"*": "a"})
    assert not Canonicalize()(prog).modified and ops(prog) == ["Dropout", "Relu"]


def test_dropout_whose_mask_is_used_keeps_the_mask_placed_like_the_dropout():
    net = Net({"x": [1, 4]})
    net.nodes.append(onnx.helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"))
    net.op("Cast", "m", ["mask"], to=onnx.TensorProto.FLOAT)
    net.op("Add", "y", ["d", "m"])
    prog, _ = canonical(net.model(["y"]), {"drop": "b", "*": "a"})
    assert ops(prog) == ["ConstantOfShape", "Cast", "Add"]
    (mask,) = [n for n in prog.nodes() if n.op_type == "ConstantOfShape"]
    assert mask.name == "drop" and mask.outputs[0].name == "mask" and placement_of(mask).device == "b"


@pytest.mark.parametrize("count", [2, 3])
def test_sum_becomes_a_chain_of_adds(count):
    net = Net({f"x{i}": [1, 3, 4] for i in range(count)})
    net.op("Sum", "s", [f"x{i}" for i in range(count)])
    net.op("Relu", "y", ["s"])
    prog, result = canonical(net.model(["y"]))
    assert ops(prog) == ["Add"] * (count - 1) + ["Relu"]
    assert prog.node("s").outputs[0].name == "s" and prog.node("y").inputs[0] is prog.node("s").outputs[0]
    assert result.details == {"Sum → Add": 1}


def test_sum_broadcasts_like_add():
    net = Net({"x": [2, 3, 4]})
    net.op("Sum", "y", ["x", net.weight("row", 4), net.weight("col", 3, 1)])
    prog, _ = canonical(net.model(["y"]))
    assert ops(prog) == ["Add", "Add"] and [list(n.outputs[0].shape) for n in prog.nodes()] == [[2, 3, 4]] * 2


def test_sum_of_one_is_removed():
    net = Net({"x": [1, 4]})
    net.op("Relu", "r", ["x"])
    net.op("Sum", "s", ["r"])
    net.op("Sigmoid", "y", ["s"])
    prog, _ = canonical(net.model(["y"]))
    assert ops(prog) == ["Relu", "Sigmoid"]


def test_graph_output_made_by_an_identity_keeps_its_name():
    net = Net({"x": [1, 4]})
    net.op("Relu", "r", ["x"])
    net.op("Identity", "out", ["r"])
    prog, _ = canonical(net.model(["out"]))
    assert ops(prog) == ["Relu"] and prog.node("r").outputs[0].name == "out"


def test_identity_between_two_outputs_or_from_an_input_stays():
    net = Net({"x": [1, 4]})
    net.op("Relu", "r", ["x"])
    net.op("Identity", "copy", ["r"])
    net.op("Identity", "passthrough", ["x"])
    prog, result = canonical(net.model(["r", "copy", "passthrough"]))
    assert ops(prog) == ["Relu", "Identity", "Identity"] and not result.modified


def test_constant_subgraph_exposed_by_a_rewrite_is_folded():
    net = Net({"x": [1, 4]})
    net.op("Dropout", "cd", [net.const("c", np.arange(4.0).reshape(1, 4))])
    net.op("Add", "shift", ["cd", net.const("one", np.ones([1, 4]))])
    net.op("Mul", "y", ["x", "shift"])
    net.op("Neg", "constant_output", ["shift"])
    prog, result = canonical(net.model(["y", "constant_output"]))
    assert ops(prog) == ["Mul", "Neg"], "a graph output stays produced by a node, even a constant one"
    folded = prog.node("y").inputs[1]
    assert folded.is_initializer() and folded.const_value.numpy().tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert result.details["nodes folded or removed"] == 1


def test_shape_no_op_becomes_identity_and_goes():
    net = Net({"x": [2, 6]})
    net.op("Relu", "r", ["x"])
    net.op("Reshape", "same", ["r", net.tensor("shape", np.array([2, 6], dtype=np.int64))])
    net.op("Sigmoid", "y", ["same"])
    prog, _ = canonical(net.model(["y"]))
    assert ops(prog) == ["Relu", "Sigmoid"]


def test_new_nodes_keep_placement_and_stage_of_what_they_replace():
    net = Net({"x": [1, 4], "x2": [1, 4]})
    net.op("Relu", "r", ["x"])
    net.op("Sum", "s", ["r", "x2", "x"])
    net.op("Sigmoid", "y", ["s"])
    model = net.model(["y"])
    prog = program(model, {"r": "a", "s": "b", "y": "c"})
    SplitVertical()(prog)
    stage = stage_of(prog.node("s"))
    Canonicalize()(prog)
    prog.verify()
    adds = [n for n in prog.nodes() if n.op_type == "Add"]
    assert len(adds) == 2 and all(placement_of(n).device == "b" and stage_of(n) == stage for n in adds)
    CommInsert()(prog)
    prog.verify()


def test_modified_is_false_on_a_canonical_graph():
    for model in (chain(4), diamond()):
        prog = program(model, {"*": "a"})
        before = [(n.op_type, n.name) for n in prog.nodes()]
        result = Canonicalize()(prog)
        assert not result.modified and [(n.op_type, n.name) for n in prog.nodes()] == before
    net = Net({"x": [1, 4]})
    net.op("Dropout", "d", ["x"])
    net.op("Relu", "y", ["d"])
    prog = program(net.model(["y"]), {"*": "a"})
    assert Canonicalize()(prog).modified and not Canonicalize()(prog).modified


def test_runs_first_by_default_and_refuses_inserted_communication():
    assert default_pipeline()[0].name == "canonicalize"
    prog = program(chain(2), {"n0": "a", "*": "b"})
    SplitVertical()(prog)
    CommInsert()(prog)
    assert Fact.COMM in prog.facts
    with pytest.raises(PassError, match="before comm-insert"):
        Canonicalize()(prog)
