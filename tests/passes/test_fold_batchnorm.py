"""The fold-batchnorm pass: into the Conv when that is legal and exact, one Mul + Add otherwise."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgec.compiler.annotations import placement_of, stage_of
from edgec.compiler.diagnostics import PassError
from edgec.compiler.facts import Fact
from edgec.compiler.pass_manager import PassManager, canonical_order
from edgec.passes import Canonicalize, CommInsert, FoldBatchNorm, SplitLayer, SplitVertical, default_pipeline
from graphs import Net, chain, program
from split_helpers import run, split_program

TOLERANCE = 1e-5


def bn(net: Net, name: str, x: str, channels: int, epsilon: float = 1e-3) -> str:
    """A BatchNorm with non-trivial statistics: scale, shift, mean and variance far from 1 and 0."""
    rng = net.rng
    stats = {"scale": rng.uniform(0.3, 2.0, channels), "bias": rng.normal(0, 1, channels),
             "mean": rng.normal(0, 2, channels), "var": rng.uniform(0.2, 3.0, channels)}
    params = [net.const(f"{name}.{key}", value) for key, value in stats.items()]
    return net.op("BatchNormalization", name, [x, *params], epsilon=epsilon)


def conv_bn(bias: bool = True, extra_use: bool = False) -> onnx.ModelProto:
    net = Net({"x": [1, 3, 7, 7]}, seed=1)
    inputs = ["x", net.weight("c.w", 5, 3, 3, 3)] + ([net.weight("c.b", 5)] if bias else [])
    net.op("Conv", "c", inputs, pads=[1, 1, 1, 1])
    bn(net, "bn", "c", 5)
    outputs = ["bn"]
    if extra_use:
        outputs.append(net.op("Relu", "r", ["c"]))
    return net.model(outputs)


def folded(model: onnx.ModelProto, placement: dict[str, str] | None = None):
    """Fold, verify, and compare every output with onnxruntime on the original model (relative to its scale)."""
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    expected = run(model, feeds)
    prog = program(model, placement or {"*": "a"})
    result = FoldBatchNorm()(prog)
    prog.verify()
    assert [o.name for o in prog.graph.outputs] == [o.name for o in model.graph.output]
    for got, want in zip(run(prog.model, feeds), expected):
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) / float(np.abs(want).max()) <= TOLERANCE
    return prog, result


def ops(prog) -> list[str]:
    return [n.op_type for n in prog.nodes()]


@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_folds_into_the_conv(bias):
    prog, result = folded(conv_bn(bias))
    assert ops(prog) == ["Conv"] and result.modified
    conv = prog.node("c")
    assert conv.outputs[0].name == "bn" and len(conv.inputs) == 3 and placement_of(conv).device == "a"
    assert not any(name.startswith("bn.") for name in prog.graph.initializers)
    assert result.details == {"folded into the layer": 1}


def test_standalone_bn_becomes_one_mul_and_one_add():
    net = Net({"x": [1, 3, 7, 7]}, seed=2)
    net.op("Relu", "r", ["x"])
    bn(net, "bn", "r", 3)
    net.op("Sigmoid", "y", ["bn"])
    prog, result = folded(net.model(["y"]))
    assert ops(prog) == ["Relu", "Mul", "Add", "Sigmoid"]
    add = prog.node("bn")
    assert add.op_type == "Add" and add.outputs[0].name == "bn" and prog.node("y").inputs[0] is add.outputs[0]
    assert [list(v.shape) for v in (add.inputs[1], prog.node("bn/mul").inputs[1])] == [[3, 1, 1]] * 2
    assert result.details == {"as Mul + Add": 1}


def test_two_dimensional_bn_output_keeps_its_name():
    net = Net({"x": [4, 6]}, seed=3)
    bn(net, "bn", "x", 6, epsilon=1e-5)
    prog, _ = folded(net.model(["bn"]))
    assert ops(prog) == ["Mul", "Add"] and prog.graph.outputs[0].name == "bn"


def test_bn_after_a_conv_with_two_uses_is_not_folded_into_it():
    prog, result = folded(conv_bn(extra_use=True))
    assert ops(prog) == ["Conv", "Mul", "Add", "Relu"]
    assert prog.node("c").outputs[0].name == "c" and result.details == {"as Mul + Add": 1}


def test_bn_on_another_device_than_its_conv_is_not_folded_into_it():
    prog, _ = folded(conv_bn(), {"c": "a", "bn": "b"})
    assert ops(prog) == ["Conv", "Mul", "Add"]
    assert placement_of(prog.node("c")).device == "a"
    assert {placement_of(n).device for n in prog.nodes() if n.op_type in ("Mul", "Add")} == {"b"}


def test_bn_after_gemm_folds_into_it():
    net = Net({"x": [4, 10]}, seed=4)
    net.op("Gemm", "fc", ["x", net.weight("fc.w", 6, 10), net.weight("fc.b", 6)], transB=1, beta=2.0)
    bn(net, "bn", "fc", 6)
    prog, _ = folded(net.model(["bn"]))
    assert ops(prog) == ["Gemm"]


def test_folds_in_a_staged_program_and_keeps_stages():
    model = conv_bn()
    prog = program(model, {"c": "a", "bn": "b"})
    SplitVertical()(prog)
    FoldBatchNorm()(prog)
    prog.verify()
    assert {stage_of(n) for n in prog.nodes() if n.op_type in ("Mul", "Add")} == {1}
    CommInsert()(prog)
    prog.verify()


def test_modified_is_false_without_batchnorm():
    prog = program(chain(3), {"*": "a"})
    result = FoldBatchNorm()(prog)
    assert not result.modified and ops(prog) == ["Relu", "Sigmoid", "Relu"]
    assert Fact.BATCHNORM_FOLDED in prog.facts


def test_training_mode_bn_is_refused():
    net = Net({"x": [2, 3, 4, 4]})
    bn(net, "bn", "x", 3)
    node = net.nodes[-1]
    node.output.extend(["running_mean", "running_var"])
    node.attribute.append(onnx.helper.make_attribute("training_mode", 1))
    prog = program(net.model(["bn"]), {"*": "a"})
    with pytest.raises(PassError, match="'bn' is in training mode"):
        FoldBatchNorm()(prog)


def test_pipeline_order_follows_from_the_facts():
    expected = ["canonicalize", "split-layer", "split", "fold-batchnorm", "comm-insert"]
    defaults = [p.name for p in default_pipeline([Fact.BATCHNORM_FOLDED])]
    assert [name for name in defaults if name in expected] == expected
    assert "fold-batchnorm" not in [p.name for p in default_pipeline()]
    shuffled = [CommInsert(), FoldBatchNorm(), SplitVertical(), Canonicalize(), SplitLayer()]
    assert [p.name for p in canonical_order(shuffled)] == expected
    with pytest.raises(PassError, match="must run after 'split'"):
        PassManager([FoldBatchNorm(), SplitVertical(), CommInsert()])


def test_default_pipeline_with_the_fact_leaves_no_batchnorm():
    prog = program(conv_bn(extra_use=True), {"c": "a", "*": "b"})
    PassManager(default_pipeline([Fact.BATCHNORM_FOLDED])).run(prog)
    assert "BatchNormalization" not in ops(prog) and Fact.BATCHNORM_FOLDED in prog.facts and Fact.COMM in prog.facts


def test_each_part_of_a_split_conv_folds_its_own_batchnorm():
    model = conv_bn()
    feeds = {"x": np.random.default_rng(0).standard_normal([1, 3, 7, 7]).astype(np.float32)}
    (want,) = run(model, feeds)
    prog = split_program(model, ["c"], "filter", 2)
    PassManager([Canonicalize(), SplitLayer(), SplitVertical(), FoldBatchNorm()]).run(prog)
    convs = [n for n in prog.nodes() if n.op_type == "Conv"]
    assert "BatchNormalization" not in ops(prog) and "Mul" not in ops(prog) and len(convs) == 2
    assert [placement_of(n).device for n in convs] == ["a", "b"] and len({stage_of(n) for n in convs}) == 2
    (got,) = run(prog.model, feeds)
    assert float(np.abs(got - want).max()) / float(np.abs(want).max()) <= TOLERANCE
