"""The prune pass on tiny graphs: chains, residual blocks, concats, depthwise, Flatten → Gemm.

Dead channels (zero filters) are what L1 ranking removes first, and removing them must leave
the model outputs exactly as they were; kept channels must equal the unpruned ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphs import Net
from prune_graphs import bn, channels_kept, dead_conv, pruned, same_outputs


def chain():
    net = Net({"x": [1, 3, 8, 8]}, seed=1)
    y = net.op("Relu", "r1", [bn(net, "bn1", dead_conv(net, "c1", "x", 3, 8, [1, 5]), 8, [1, 5])])
    y = net.op("Relu", "r2", [bn(net, "bn2", dead_conv(net, "c2", y, 8, 6, [0]), 6, [0])])
    y = net.op("Flatten", "flat", [net.op("GlobalAveragePool", "gap", [y])])
    net.op("Gemm", "fc", [y, net.weight("fc.w", 4, 6), net.weight("fc.b", 4)], transB=1)
    return net.model(["fc"])


def test_chain_removes_dead_channels_and_keeps_outputs():
    model = chain()
    prog, result = pruned(model, ["c1", "c2"], 3 / 14, per_layer=False)
    assert result.modified
    lost = {p.node: (p.channels_before, p.channels_after) for p in prog.pruning}
    assert lost == {"c1": (8, 6), "c2": (6, 5)}
    assert list(prog.node("fc").inputs[1].shape) == [4, 5]
    same_outputs(model, prog)
    assert channels_kept(model, prog, ["r1", "r2", "c1"]) == {"r1": 6, "r2": 5, "c1": 6}


def test_zero_percent_is_an_exact_no_op():
    model = chain()
    prog, result = pruned(model, ["c1", "c2"], 0.0)
    assert not result.modified and prog.pruning == []
    assert [list(v.shape) for v in prog.graph.initializers.values()] == \
        [list(t.dims) for t in model.graph.initializer]


def test_no_statement_is_a_no_op():
    from edgec.passes.prune import Prune
    from graphs import program

    prog = program(chain(), {"*": "a"})
    assert not Prune()(prog).modified


def test_per_layer_takes_the_fraction_of_each_layer():
    model = chain()
    prog, _ = pruned(model, ["c1", "c2"], 0.25, per_layer=True)
    lost = {p.node: (p.channels_before, p.channels_after) for p in prog.pruning}
    assert lost["c1"] == (8, 6)
    prog.verify()


def residual():
    """c1 → bn → relu → c2 → bn ─┐
        x ─ c0 ──────────────── Add → relu → c3: c0 and c2 are tied by the Add (dead channel 2 in both)."""
    net = Net({"x": [1, 3, 8, 8]}, seed=2)
    stem = dead_conv(net, "c0", "x", 3, 6, [2])
    y = net.op("Relu", "r1", [bn(net, "bn1", dead_conv(net, "c1", stem, 6, 4, [3]), 4, [3])])
    y = bn(net, "bn2", dead_conv(net, "c2", y, 4, 6, [2]), 6, [2])
    s = net.op("Relu", "r2", [net.op("Add", "add", [y, stem])])
    net.op("Conv", "c3", [s, net.weight("c3.w", 5, 6, 1, 1)])
    return net.model(["c3"])


def test_residual_add_ties_channels():
    model = residual()
    prog, _ = pruned(model, ["c0", "c1", "c2"], 0.2)
    lost = {p.node: (p.channels_before, p.channels_after) for p in prog.pruning}
    assert lost["c0"] == lost["c2"] == (6, 5)
    assert list(prog.node("c3").inputs[1].shape) == [5, 5, 1, 1]
    same_outputs(model, prog)
    channels_kept(model, prog, ["add", "r1"])


def test_a_selector_that_breaks_a_tie_is_widened_with_a_warning():
    model = residual()
    prog, _ = pruned(model, ["c2"], 0.2)
    assert any("widened" in w.message and "c0" in w.message for w in prog.warnings)
    assert {p.node for p in prog.pruning} == {"c0", "c2"}
    same_outputs(model, prog)


def test_model_output_channels_are_never_pruned():
    net = Net({"x": [1, 3, 6, 6]})
    dead_conv(net, "c", "x", 3, 4, [0])
    model = net.model(["c"])
    prog, result = pruned(model, ["c"], 0.5)
    assert not result.modified
    assert any("model output" in w.message for w in prog.warnings)


def densenet():
    """Two convs concatenated (DenseNet-style) and read by a 1x1 conv: Concat offsets shift."""
    net = Net({"x": [1, 3, 8, 8]}, seed=3)
    a = net.op("Relu", "ra", [dead_conv(net, "ca", "x", 3, 4, [1])])
    b = net.op("Relu", "rb", [dead_conv(net, "cb", a, 4, 5, [0, 4])])
    cat = net.op("Concat", "cat", [a, b, "x"], axis=1)
    net.op("Conv", "c", [cat, net.weight("c.w", 2, 12, 1, 1)])
    return net.model(["c"])


def test_concat_offsets_follow():
    model = densenet()
    prog, _ = pruned(model, ["ca", "cb"], 3 / 9)
    assert list(prog.node("c").inputs[1].shape) == [2, 9, 1, 1]
    same_outputs(model, prog)
    assert channels_kept(model, prog, ["cat"]) == {"cat": 9}


def depthwise():
    net = Net({"x": [1, 3, 8, 8]}, seed=4)
    p = net.op("Relu", "r", [bn(net, "bn", dead_conv(net, "pw", "x", 3, 6, [4], k=1), 6, [4])])
    d = net.op("Relu", "rd", [dead_conv(net, "dw", p, 6, 6, [], group=6)])
    net.op("Conv", "pw2", [d, net.weight("pw2.w", 5, 6, 1, 1)])
    return net.model(["pw2"])


def test_depthwise_follows_its_input():
    model = depthwise()
    prog, _ = pruned(model, ["pw", "dw"], 1 / 6)
    dw = prog.node("dw")
    assert dw.attributes.get_int("group") == 5 and list(dw.inputs[1].shape) == [5, 1, 3, 3]
    assert list(prog.node("pw2").inputs[1].shape) == [5, 5, 1, 1]
    channels_kept(model, prog, ["rd"])


def flatten_gemm(reshape: bool = False):
    net = Net({"x": [1, 2, 4, 4]}, seed=5)
    y = net.op("MaxPool", "pool", [net.op("Relu", "r", [dead_conv(net, "c", "x", 2, 4, [2])])], kernel_shape=[2, 2],
               strides=[2, 2])
    if reshape:
        y = net.op("Reshape", "flat", [y, net.tensor("shape", np.array([1, 16], np.int64))])
    else:
        y = net.op("Flatten", "flat", [y])
    net.op("Gemm", "fc", [y, net.weight("fc.w", 16, 3), net.weight("fc.b", 3)])
    return net.model(["fc"])


@pytest.mark.parametrize("reshape", [False, True])
def test_flatten_gemm_drops_column_blocks(reshape):
    model = flatten_gemm(reshape)
    prog, _ = pruned(model, ["c"], 0.25)
    assert list(prog.node("fc").inputs[1].shape) == [12, 3]
    same_outputs(model, prog)


def test_reshape_that_mixes_channels_blocks_with_a_warning():
    net = Net({"x": [1, 2, 4, 4]}, seed=6)
    y = net.op("Reshape", "mix", [dead_conv(net, "c", "x", 2, 4, [2]), net.tensor("shape", np.array([1, 2, 32], np.int64))])
    net.op("Relu", "out", [y])
    model = net.model(["out"])
    prog, result = pruned(model, ["c"], 0.25)
    assert not result.modified
    assert any("mixes channels" in w.message for w in prog.warnings)
