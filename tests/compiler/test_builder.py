"""The Builder every rewrite uses: annotations carried, shapes set, opset-aware Slice, order kept."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from edgec.compiler.annotations import PLACEMENT, SPLIT, STAGE, Placement, SplitSpec, placement_of, stage_of
from edgec.compiler.builder import CARRIED, Builder, annotate_like, same_place
from edgec.compiler.diagnostics import VerifyError
from edgec.passes import CommInsert, SplitVertical
from graphs import chain, program


def _graph(opset: int) -> tuple[ir.Graph, ir.Node]:
    x = ir.Value(name="x", shape=ir.Shape([2, 6, 4]), type=ir.TensorType(ir.DataType.FLOAT))
    y = ir.Value(name="y", shape=ir.Shape([2, 6, 4]), type=ir.TensorType(ir.DataType.FLOAT))
    relu = ir.Node("", "Relu", [x], outputs=[y], name="relu")
    relu.meta[PLACEMENT] = Placement("a")
    return ir.Graph([x], [y], nodes=[relu], opset_imports={"": opset}), relu


def test_new_nodes_are_placed_like_the_anchor_unless_told():
    graph, relu = _graph(13)
    b = Builder(graph, relu, "relu")
    same = b.op("Sigmoid", "s", [graph.inputs[0]], [2, 6, 4], ir.DataType.FLOAT)
    other = b.op("Tanh", "t", [same], [2, 6, 4], ir.DataType.FLOAT, Placement("b", "gpu"))
    assert placement_of(same.producer()) == Placement("a")
    assert placement_of(other.producer()) == Placement("b", "gpu")
    assert same.producer().name == "relu/s" and same.name == "relu/s"


def test_values_get_shape_and_dtype():
    graph, relu = _graph(13)
    b = Builder(graph, relu, "p")
    x = graph.inputs[0]
    part = b.slice("part", x, [1], [2], [5])
    assert list(part.shape) == [2, 3, 4] and part.dtype == ir.DataType.FLOAT
    joined = b.concat("join", [part, part], axis=1)
    assert list(joined.shape) == [2, 6, 4]
    weight = b.const("w", np.ones([6, 1], dtype=np.float16))
    assert weight.is_initializer() and list(weight.shape) == [6, 1] and weight.dtype == ir.DataType.FLOAT16


def test_slice_follows_the_opset():
    old_graph, old_relu = _graph(9)
    old = Builder(old_graph, old_relu, "p").slice("s", old_graph.inputs[0], [2], [1], [3]).producer()
    assert len(old.inputs) == 1
    assert list(old.attributes["starts"].as_ints()) == [1] and list(old.attributes["axes"].as_ints()) == [2]
    new_graph, new_relu = _graph(13)
    new = Builder(new_graph, new_relu, "p").slice("s", new_graph.inputs[0], [2], [1], [3]).producer()
    assert not new.attributes and [v.const_value.numpy().tolist() for v in new.inputs[1:]] == [[1], [3], [2]]


def test_sum_is_a_chain_of_adds_with_broadcast_shapes():
    graph, relu = _graph(13)
    b = Builder(graph, relu, "m")
    x = graph.inputs[0]
    bias = b.const("bias", np.ones([4], dtype=np.float32))
    total = b.sum("merge", [x, x, bias])
    ops = [n.op_type for n in graph]
    assert ops == ["Add", "Add", "Relu"] and total.name == "m/merge" and list(total.shape) == [2, 6, 4]
    assert b.sum("one", [x]) is x


def test_insertion_keeps_topological_order():
    graph, relu = _graph(13)
    b = Builder(graph, relu, "pre")
    first = b.op("Neg", "neg", [graph.inputs[0]], [2, 6, 4], ir.DataType.FLOAT)
    second = b.op("Abs", "abs", [first], [2, 6, 4], ir.DataType.FLOAT)
    relu.replace_input_with(0, second)
    assert [n.name for n in graph] == ["pre/neg", "pre/abs", "relu"]
    graph.sort()
    assert [n.name for n in graph] == ["pre/neg", "pre/abs", "relu"]


def test_clone_carries_the_originals_annotations_but_not_its_split():
    graph, relu = _graph(13)
    relu.meta[SPLIT] = SplitSpec("output", (Placement("a"), Placement("b")))
    relu.meta[STAGE] = 0
    copy = Builder(graph, relu, "part0").clone(relu, "relu", [graph.inputs[0]], [2, 6, 4]).producer()
    assert copy.op_type == "Relu" and placement_of(copy) == Placement("a") and stage_of(copy) == 0
    assert SPLIT not in copy.meta
    moved = Builder(graph, relu, "part1").clone(relu, "relu", [graph.inputs[0]], [2, 6, 4], Placement("b")).producer()
    assert placement_of(moved) == Placement("b") and stage_of(moved) is None, "a stage never follows to another device"


def test_annotate_like_copies_what_follows_a_rewrite():
    graph, relu = _graph(13)
    relu.meta[STAGE] = 3
    relu.meta[SPLIT] = SplitSpec("output", (Placement("a"),))
    relu.meta["other.tool"] = 1
    node = annotate_like(ir.Node("", "Identity", [graph.inputs[0]]), relu)
    assert set(node.meta) == {PLACEMENT, STAGE} and {PLACEMENT, STAGE} <= set(CARRIED) and same_place(node, relu)


def _staged():
    prog = program(chain(4), {"n0": "a", "n1": "a", "*": "b"})
    SplitVertical()(prog)
    return prog


def test_a_node_built_after_the_split_verifies_in_its_stage():
    prog = _staged()
    n2 = prog.node("n2")
    neg = Builder(prog.graph, n2, "n2").op("Neg", "neg", [n2.inputs[0]], [1, 4], ir.DataType.FLOAT)
    n2.replace_input_with(0, neg)
    assert stage_of(neg.producer()) == stage_of(n2) == 1
    prog.verify()
    CommInsert()(prog)
    prog.verify()
    assert [t.tensor for t in prog.transfers] == ["n1"]


def test_a_staged_node_on_another_device_fails_verify_by_name():
    prog = _staged()
    n2 = prog.node("n2")
    neg = Builder(prog.graph, n2, "n2").op("Neg", "neg", [n2.inputs[0]], [1, 4], ir.DataType.FLOAT, Placement("a"))
    n2.replace_input_with(0, neg)
    with pytest.raises(VerifyError, match="'n2/neg' has no valid stage"):
        prog.verify()


def test_in_stage_adopts_a_node_made_elsewhere():
    prog = _staged()
    n0 = prog.node("n0")
    out = ir.Value(name="copy", shape=ir.Shape([1, 4]), type=ir.TensorType(ir.DataType.FLOAT))
    node = Builder.in_stage(prog, 0).adopt(ir.Node("", "Identity", [n0.outputs[0]], outputs=[out], name="copy"),
                                           after=n0)
    prog.node("n1").replace_input_with(0, out)
    assert stage_of(node) == 0 and placement_of(node) == Placement("a")
    assert [n.name for n in prog.nodes()][:2] == ["n0", "copy"]
    prog.verify()
    first = Builder.in_stage(prog, 1).adopt(ir.Node("", "Constant", [], [ir.AttrFloat32("value_float", 1.0)],
                                                    outputs=[ir.Value(name="one", shape=ir.Shape([]),
                                                                      type=ir.TensorType(ir.DataType.FLOAT))]))
    assert next(iter(prog.nodes())) is first and stage_of(first) == 1
